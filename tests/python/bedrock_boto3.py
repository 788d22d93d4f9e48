"""`boto3`'s bedrock-runtime client against the Bedrock simulator: Converse and
ConverseStream, a throttle surfacing as the client's ThrottlingException, and an
assistant prefill that the simulator continues.

Credentials come from the simulated identity service through the container
credentials provider (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, set by the Rust test):
the default chain, no key in sight. The simulator is set to throttle the first
request once; the client's retries are off so that the throttle surfaces.
"""

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from simclients import emit, env

URL = env("SIM_BEDROCK_URL")
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
QUESTION = "Summarise the incident review for the on-call team."

client = boto3.client(
    "bedrock-runtime",
    region_name="us-east-1",
    endpoint_url=URL,
    config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
)
user = {"role": "user", "content": [{"text": QUESTION}]}

# 1. The throttle, as boto3's typed error.
try:
    client.converse(modelId=MODEL, messages=[user])
    throttled = None
except ClientError as e:
    throttled = {
        "code": e.response["Error"]["Code"],
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        "is_modeled": isinstance(e, client.exceptions.ThrottlingException),
    }

# 2. Converse.
reply = client.converse(modelId=MODEL, messages=[user], inferenceConfig={"maxTokens": 400})
text = "".join(b.get("text", "") for b in reply["output"]["message"]["content"])

# 3. ConverseStream.
streamed, stop, usage = "", None, None
for event in client.converse_stream(modelId=MODEL, messages=[user])["stream"]:
    if "contentBlockDelta" in event:
        streamed += event["contentBlockDelta"]["delta"].get("text", "")
    elif "messageStop" in event:
        stop = event["messageStop"]["stopReason"]
    elif "metadata" in event:
        usage = event["metadata"]["usage"]

# 4. A prefill: the first words of the answer as a final assistant message; the
# simulator continues with the rest of that same answer.
prefill = " ".join(text.split(" ")[:3])
continued = client.converse(
    modelId=MODEL,
    messages=[user, {"role": "assistant", "content": [{"text": prefill}]}],
)
continuation = "".join(b.get("text", "") for b in continued["output"]["message"]["content"])

emit(
    {
        "throttled": throttled,
        "converse": {
            "text": text,
            "stop": reply["stopReason"],
            "input_tokens": reply["usage"]["inputTokens"],
            "output_tokens": reply["usage"]["outputTokens"],
        },
        "stream": {
            "text": streamed,
            "stop": stop,
            "input_tokens": usage["inputTokens"],
            "output_tokens": usage["outputTokens"],
        },
        "prefill": {"prefill": prefill, "continuation": continuation},
    }
)
