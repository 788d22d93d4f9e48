"""`anthropic`'s AnthropicVertex client against the Vertex simulator (Claude on
Vertex): a 529 overloaded error surfacing as the SDK's own error type, then a message
and a stream.

Credentials: workload identity federation against the simulated Google STS
(`credentials=`), so the bearer token is one the simulator issued. The simulator is
set to answer the first request with a 529 once; that client has retries off so the
error surfaces. The SDK sends its own dated `anthropic_version`.
"""

import anthropic
from anthropic import AnthropicVertex
from simclients import emit, env, identity_pool_credentials

URL = env("SIM_VERTEX_URL")
REGION = "us-east5"
MODEL = "claude-sonnet-4@20250514"
QUESTION = "Summarise the incident review for the on-call team."

credentials = identity_pool_credentials(env("SIM_IDENTITY_URL"))


def client(max_retries):
    return AnthropicVertex(
        region=REGION,
        project_id="crossbar-ci",
        credentials=credentials,
        base_url=f"{URL}/v1",
        max_retries=max_retries,
    )


messages = [{"role": "user", "content": QUESTION}]

# 1. The 529, as anthropic.OverloadedError.
try:
    client(0).messages.create(model=MODEL, max_tokens=300, messages=messages)
    overloaded = None
except anthropic.APIStatusError as e:
    overloaded = {
        "type": type(e).__name__,
        "status": e.status_code,
        "is_overloaded_error": isinstance(e, anthropic.OverloadedError),
        "error_type": e.body["error"]["type"] if isinstance(e.body, dict) else None,
    }

# 2. A message.
message = client(2).messages.create(model=MODEL, max_tokens=300, messages=messages)

# 3. The same, streamed through the SDK's stream helper.
with client(2).messages.stream(model=MODEL, max_tokens=300, messages=messages) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()

emit(
    {
        "overloaded": overloaded,
        "message": {
            "text": "".join(b.text for b in message.content if b.type == "text"),
            "stop_reason": message.stop_reason,
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
            "model": message.model,
        },
        "stream": {
            "text": streamed,
            "stop_reason": final.stop_reason,
            "input_tokens": final.usage.input_tokens,
            "output_tokens": final.usage.output_tokens,
        },
    }
)
