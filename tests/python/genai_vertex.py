"""`google-genai` in Vertex mode against the Vertex simulator (Gemini): generate,
stream, and function calling — a manual round trip with a declared schema (the SDK
writes its types upper case: OBJECT, STRING) and the SDK's automatic function calling
with a Python function (sent as JSON Schema in `parameters_json_schema`).

Credentials: workload identity federation against the simulated Google STS
(`credentials=`), so the bearer token is one the simulator issued.
"""

from google import genai
from google.genai import types
from simclients import emit, env, identity_pool_credentials

URL = env("SIM_VERTEX_URL")
MODEL = "gemini-2.5-flash"
QUESTION = "Summarise the incident review for the on-call team."

client = genai.Client(
    vertexai=True,
    project="crossbar-ci",
    location="europe-west4",
    credentials=identity_pool_credentials(env("SIM_IDENTITY_URL")),
    http_options=types.HttpOptions(base_url=URL),
)

# 1. Generate.
reply = client.models.generate_content(model=MODEL, contents=QUESTION)

# 2. Stream.
chunks = list(client.models.generate_content_stream(model=MODEL, contents=QUESTION))
streamed = "".join(c.text or "" for c in chunks)
last = chunks[-1]

# 3. Function calling, by hand: a declared schema, a forced call, the result sent back.
get_weather = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "days": types.Schema(type=types.Type.INTEGER),
        },
        required=["city"],
    ),
)
config = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[get_weather])],
    tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
    ),
)
question = types.Content(role="user", parts=[types.Part(text="What is the weather in Lisbon?")])
called = client.models.generate_content(model=MODEL, contents=[question], config=config)
call = called.function_calls[0]
answered = client.models.generate_content(
    model=MODEL,
    contents=[
        question,
        called.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name=call.name, response={"temp_c": 21})
            ],
        ),
    ],
    config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[get_weather])]),
)

# 4. Automatic function calling: the SDK calls the Python function and sends its
# result back by itself.
calls_made = []


def get_forecast(city: str, days: int) -> str:
    """The weather forecast for a city."""
    calls_made.append({"city": city, "days": days})
    return f"sunny in {city}"


automatic = client.models.generate_content(
    model=MODEL,
    contents="What is the forecast? Use get_forecast.",
    config=types.GenerateContentConfig(tools=[get_forecast]),
)

emit(
    {
        "generate": {
            "text": reply.text,
            "finish": reply.candidates[0].finish_reason.name,
            "prompt_tokens": reply.usage_metadata.prompt_token_count,
            "candidates_tokens": reply.usage_metadata.candidates_token_count,
        },
        "stream": {
            "text": streamed,
            "chunks": len(chunks),
            "finish": last.candidates[0].finish_reason.name,
            "candidates_tokens": last.usage_metadata.candidates_token_count,
        },
        "function_call": {
            "name": call.name,
            "args": call.args,
            "args_type": type(call.args).__name__,
            "answer": answered.text,
        },
        "automatic": {
            "calls": calls_made,
            "answer": automatic.text,
            "history_roles": [c.role for c in (automatic.automatic_function_calling_history or [])],
        },
    }
)
