"""The `openai` client against Crossbar, whose primaries misbehave (the failover table).

The Rust test (tests/tests/python_failover.rs) starts the simulators, each primary
with its fault, and `crossbar serve` in front of them with one feature per fault:

- `throttled`: the primary answers 429 with `retry-after: 2` once;
- `cut`: the primary's stream is cut after 40 of its 60 tokens;
- `stall`: the primary's stream stalls for 30 s after 20 tokens;
- `malformed`: the primary sends one unparseable chunk mid-stream;
- `nodone`: the primary ends its stream after the usage, without `[DONE]`;
- `reference`: a healthy endpoint with the same model and seed (the answer an
  unbroken stream gets).

The client is an application's, unchanged but for its base URL and key, with its own
retries off: whatever it gets, Crossbar did. Every stream is read to its end; an
exception is reported, not raised, so the Rust test says which case failed.
"""

import time

import openai
from simclients import emit, env

URL = env("CROSSBAR_URL")
KEY = env("CROSSBAR_KEY")

client = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0, timeout=60)


def question(prompt):
    return [{"role": "user", "content": prompt}]


def stream(feature, prompt, max_tokens):
    """Reads one stream as an application would: text, finish reasons, ids, usage."""
    started = time.monotonic()
    got = {"text": "", "finishes": [], "ids": [], "chunks": 0, "usage": None, "error": None}
    try:
        for chunk in client.chat.completions.create(
            model=feature,
            messages=question(prompt),
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        ):
            got["chunks"] += 1
            if chunk.id not in got["ids"]:
                got["ids"].append(chunk.id)
            for choice in chunk.choices:
                got["text"] += choice.delta.content or ""
                if choice.finish_reason is not None:
                    got["finishes"].append(choice.finish_reason)
            if chunk.usage is not None:
                got["usage"] = {
                    "prompt_tokens": chunk.usage.prompt_tokens,
                    "completion_tokens": chunk.usage.completion_tokens,
                }
    except Exception as e:  # reported: the Rust test fails on it, naming the case
        got["error"] = f"{type(e).__name__}: {e}"
    got["seconds"] = time.monotonic() - started
    return got


# 1. A whole request whose primary throttles once with retry-after: 2. The client
#    does not retry (max_retries=0): Crossbar waits and retries for it.
started = time.monotonic()
raw = client.chat.completions.with_raw_response.create(
    model="throttled",
    messages=question("Summarise the incident review for the on-call team."),
    max_tokens=30,
)
completion = raw.parse()
whole = {
    "text": completion.choices[0].message.content,
    "finish": completion.choices[0].finish_reason,
    "completion_tokens": completion.usage.completion_tokens,
    "endpoint": raw.headers.get("x-crossbar-endpoint"),
    "attempts": raw.headers.get("x-crossbar-attempts"),
    "seconds": time.monotonic() - started,
}

# 2. A question whose answer is 60 tokens long (at max_tokens=60), found on the
#    healthy reference, and its answer streamed.
prompt = None
for i in range(300):
    candidate = f"Tell me the whole story of incident {i}."
    answer = client.chat.completions.create(
        model="reference", messages=question(candidate), max_tokens=60
    )
    if answer.usage.completion_tokens == 60:
        prompt = candidate
        break
assert prompt is not None, "no prompt with a 60-token answer"
reference = stream("reference", prompt, 60)

# 3. The same question where the primary misbehaves mid-stream.
cases = {feature: stream(feature, prompt, 60) for feature in ["cut", "stall", "malformed", "nodone"]}

emit({"whole": whole, "prompt": prompt, "reference": reference, "streams": cases})
