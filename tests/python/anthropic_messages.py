"""The `anthropic` client against `crossbar serve` (the Anthropic Messages dialect,
`/v1/messages`), which routes to the simulators behind it: a message, streams (the
SDK's stream helper and the raw events), a tool-use round trip (whole and streamed),
count_tokens, and errors as the SDK's own exception classes.

The client is unchanged but for its base URL and key (the gateway key: the SDK sends it
as `Authorization: Bearer`; one request sends `x-api-key` instead, as curl users do).
Clients that must see an error have retries off, so the error surfaces. `model` names
a Crossbar feature: `summarize` (two healthy endpoints), `throttled` (its endpoint
always throttles), `overloaded` (always overloaded), `fragile` (its only endpoint cuts
every stream after a few tokens, so nothing can continue it).
"""

import anthropic
import httpx2
from simclients import emit, env

URL = env("CROSSBAR_URL")
KEY = env("CROSSBAR_KEY")
QUESTION = "Summarise the incident review for the on-call team."
WEATHER = "What is the weather in Oslo this week? Use get_weather."
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    }
]


def client(max_retries=2, api_key=KEY):
    return anthropic.Anthropic(base_url=URL, api_key=api_key, max_retries=max_retries)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


question = [{"role": "user", "content": QUESTION}]

# 1. A message; `metadata.user_id` is the experiments' sticky key.
message = client().messages.create(
    model="summarize", max_tokens=300, messages=question, metadata={"user_id": "user-42"}
)

# 2. The same, streamed through the SDK's stream helper, then as raw events.
with client().messages.stream(model="summarize", max_tokens=300, messages=question) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
raw_events = [
    event.type
    for event in client().messages.create(
        model="summarize", max_tokens=300, messages=question, stream=True
    )
]

# 3. Tool use: the model calls get_weather, the client answers with a tool_result,
#    the model answers in text.
ask = [{"role": "user", "content": WEATHER}]
first = client().messages.create(
    model="summarize",
    max_tokens=300,
    tools=TOOLS,
    tool_choice={"type": "tool", "name": "get_weather"},
    messages=ask,
)
use = next(b for b in first.content if b.type == "tool_use")
second = client().messages.create(
    model="summarize",
    max_tokens=300,
    tools=TOOLS,
    messages=ask
    + [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "12 C and sunny"}
            ],
        },
    ],
)
with client().messages.stream(
    model="summarize",
    max_tokens=300,
    tools=TOOLS,
    tool_choice={"type": "tool", "name": "get_weather"},
    messages=ask,
) as stream:
    streamed_tool = stream.get_final_message()
streamed_use = next(b for b in streamed_tool.content if b.type == "tool_use")

# 4. count_tokens: an estimate, marked as one.
count = client().messages.count_tokens(model="summarize", messages=question)

# 5. `x-api-key` instead of a bearer token (what curl users send), as plain HTTP.
with_api_key = httpx2.post(
    f"{URL}/v1/messages",
    headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    json={"model": "summarize", "max_tokens": 50, "messages": question},
    timeout=30,
)


# 6. Errors, as the SDK's own classes.
def error_of(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "type": body.get("error", {}).get("type"),
            "code": body.get("error", {}).get("code"),
            "request_id": e.request_id,
        }
    return None


def create(model, api_key=KEY, messages=question):
    return lambda: client(0, api_key).messages.create(
        model=model, max_tokens=100, messages=messages
    )


pdf = [
    {
        "role": "user",
        "content": [
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
            },
            {"type": "text", "text": "Summarise this."},
        ],
    }
]
errors = {
    "bad_key": error_of(create("summarize", api_key="not-a-gateway-key")),
    "unknown_feature": error_of(create("no-such-feature")),
    "pdf": error_of(create("summarize", messages=pdf)),
    "throttled": error_of(create("throttled")),
    "overloaded": error_of(create("overloaded")),
}

# 7. A stream that breaks after its first tokens and cannot be continued: the SDK
#    raises on the `event: error` that ends it, after the text it already got.
received = ""
try:
    with client(0).messages.stream(model="fragile", max_tokens=300, messages=question) as stream:
        for text in stream.text_stream:
            received += text
    midstream = None
except anthropic.APIStatusError as e:
    midstream = {
        "class": type(e).__name__,
        "type": e.body.get("error", {}).get("type") if isinstance(e.body, dict) else None,
        "code": e.body.get("error", {}).get("code") if isinstance(e.body, dict) else None,
        "received": received,
    }

emit(
    {
        "message": {
            "id": message.id,
            "text": text_of(message),
            "stop_reason": message.stop_reason,
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
            "model": message.model,
            "request_id": message._request_id,
        },
        "stream": {
            "text": streamed,
            "final_text": text_of(final),
            "stop_reason": final.stop_reason,
            "input_tokens": final.usage.input_tokens,
            "output_tokens": final.usage.output_tokens,
        },
        "raw_events": raw_events,
        "tool": {
            "stop_reason": first.stop_reason,
            "name": use.name,
            "input": use.input,
            "answer": text_of(second),
            "answer_stop_reason": second.stop_reason,
            "streamed_name": streamed_use.name,
            "streamed_input": streamed_use.input,
            "streamed_stop_reason": streamed_tool.stop_reason,
        },
        "count": count.input_tokens,
        "with_api_key": {"status": with_api_key.status_code, "type": with_api_key.json().get("type")},
        "errors": errors,
        "midstream": midstream,
    }
)
