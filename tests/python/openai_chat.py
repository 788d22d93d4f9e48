"""The `openai` client (OpenAI and AzureOpenAI) against the OpenAI simulator.

The simulator is set (by the Rust test) to throttle the first request once with a
`retry-after`: the client's own retry must wait it out and succeed, so `chat` reports
a normal completion. Then a stream with usage, and the Azure deployment form.
"""

import openai
from simclients import emit, env

URL = env("SIM_OPENAI_URL")
MODEL = "gpt-4o-mini"
QUESTION = "Summarise the incident review for the on-call team."

client = openai.OpenAI(base_url=f"{URL}/v1", api_key="sk-crossbar-sim-test", max_retries=2)

# 1. A completion: throttled once, retried by the client after retry-after.
chat = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": QUESTION}]
)

# 2. The same question streamed, with usage in a last chunk.
text, finish, usage = "", None, None
for chunk in client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": QUESTION}],
    stream=True,
    stream_options={"include_usage": True},
):
    for choice in chunk.choices:
        text += choice.delta.content or ""
        finish = choice.finish_reason or finish
    if chunk.usage is not None:
        usage = chunk.usage

# 3. Azure OpenAI: deployment in the path, api-version, api-key header.
azure = openai.AzureOpenAI(
    azure_endpoint=URL, api_key="azure-sim-key", api_version="2024-10-21", max_retries=0
)
deployed = azure.chat.completions.create(
    model="gpt-4o-deployment", messages=[{"role": "user", "content": QUESTION}]
)

emit(
    {
        "chat": {
            "text": chat.choices[0].message.content,
            "finish": chat.choices[0].finish_reason,
            "prompt_tokens": chat.usage.prompt_tokens,
            "completion_tokens": chat.usage.completion_tokens,
            "model": chat.model,
        },
        "stream": {
            "text": text,
            "finish": finish,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        },
        "azure": {
            "text": deployed.choices[0].message.content,
            "model": deployed.model,
        },
    }
)
