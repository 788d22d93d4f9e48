"""The `openai` client's Responses API against `crossbar serve` (`/v1/responses`, the
stateless subset), which routes to the simulators behind it: text, streams (raw typed
events and the SDK's stream helper), a function-call round trip (whole and streamed),
a JSON-schema answer, and errors.

The client is unchanged but for its base URL and key (the gateway key). Clients that
must see an error have retries off. `model` names a Crossbar feature: `summarize` (two
healthy endpoints) or `fragile` (its only endpoint cuts every stream after a few
tokens, so nothing can continue it).
"""

import json

import openai
from simclients import emit, env

URL = env("CROSSBAR_URL")
KEY = env("CROSSBAR_KEY")
QUESTION = "Summarise the incident review for the on-call team."
INSTRUCTIONS = "Answer in two sentences."
WEATHER = "What is the weather in Oslo this week? Use get_weather."
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


def client(max_retries=2):
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=max_retries)


# 1. Text.
text = client().responses.create(
    model="summarize", instructions=INSTRUCTIONS, input=QUESTION, user="user-42"
)

# 2. The same, streamed: the raw typed events, then through the SDK's stream helper.
events, deltas, completed = [], "", None
for event in client().responses.create(
    model="summarize", instructions=INSTRUCTIONS, input=QUESTION, stream=True
):
    events.append({"type": event.type, "sequence_number": event.sequence_number})
    if event.type == "response.output_text.delta":
        deltas += event.delta
    if event.type == "response.completed":
        completed = event.response
with client().responses.stream(
    model="summarize", instructions=INSTRUCTIONS, input=QUESTION
) as stream:
    helper_deltas = "".join(
        e.delta for e in stream if e.type == "response.output_text.delta"
    )
    helper_final = stream.get_final_response()

# 3. A function call: the model calls get_weather, the client sends the output back
#    (with the model's output items, as the API's own guide does), the model answers.
ask = [{"role": "user", "content": WEATHER}]
first = client().responses.create(
    model="summarize",
    input=ask,
    tools=TOOLS,
    tool_choice={"type": "function", "name": "get_weather"},
)
call = next(item for item in first.output if item.type == "function_call")
second = client().responses.create(
    model="summarize",
    input=ask
    + first.output
    + [{"type": "function_call_output", "call_id": call.call_id, "output": "12 C and sunny"}],
    tools=TOOLS,
)
with client().responses.stream(
    model="summarize",
    input=ask,
    tools=TOOLS,
    tool_choice={"type": "function", "name": "get_weather"},
) as stream:
    argument_deltas = "".join(
        e.delta for e in stream if e.type == "response.function_call_arguments.delta"
    )
    streamed_call = next(
        item for item in stream.get_final_response().output if item.type == "function_call"
    )

# 4. A JSON-schema answer (text.format).
structured = client().responses.create(
    model="summarize",
    input=QUESTION,
    text={
        "format": {
            "type": "json_schema",
            "name": "summary",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    },
)


# 5. Errors: what a stateless gateway cannot do, as the SDK's BadRequestError.
def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "code": body.get("code"),
            "param": body.get("param"),
        }
    return None


errors = {
    "store": error_of(
        lambda: client(0).responses.create(model="summarize", input=QUESTION, store=True)
    ),
    "previous_response_id": error_of(
        lambda: client(0).responses.create(
            model="summarize", input=QUESTION, previous_response_id=text.id
        )
    ),
    "unknown_feature": error_of(
        lambda: client(0).responses.create(model="no-such-feature", input=QUESTION)
    ),
}

# 6. A stream that breaks after its first tokens and cannot be continued: it ends
#    with an `error` event and `response.failed`, after the text already sent.
broken, received = [], ""
for event in client(0).responses.create(model="fragile", input=QUESTION, stream=True):
    broken.append(event.type)
    if event.type == "response.output_text.delta":
        received += event.delta
    if event.type == "error":
        broken_code = event.code
    if event.type == "response.failed":
        failed_status = event.response.status

emit(
    {
        "text": {
            "id": text.id,
            "status": text.status,
            "text": text.output_text,
            "model": text.model,
            "input_tokens": text.usage.input_tokens,
            "output_tokens": text.usage.output_tokens,
            "total_tokens": text.usage.total_tokens,
            "request_id": text._request_id,
        },
        "stream": {
            "events": events,
            "text": deltas,
            "completed_text": completed.output_text,
            "status": completed.status,
            "input_tokens": completed.usage.input_tokens,
            "output_tokens": completed.usage.output_tokens,
            "helper_text": helper_deltas,
            "helper_final_text": helper_final.output_text,
        },
        "function_call": {
            "name": call.name,
            "arguments": json.loads(call.arguments),
            "call_id": call.call_id,
            "answer": second.output_text,
            "answer_types": [item.type for item in second.output],
            "streamed_name": streamed_call.name,
            "streamed_arguments": json.loads(streamed_call.arguments),
            "argument_deltas": argument_deltas,
        },
        "structured": json.loads(structured.output_text),
        "errors": errors,
        "midstream": {
            "events": broken,
            "received": received,
            "code": broken_code,
            "status": failed_status,
        },
    }
)
