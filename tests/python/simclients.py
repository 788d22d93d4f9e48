"""Shared by the client scripts: where the simulators are, secretless Google
credentials from the simulated identity service, and how a script reports.

Each script uses one official client exactly as an application would, changing only
the base URL and the credentials, and prints one line `RESULT <json>` with what the
client received; the Rust test that ran it (tests/tests/python_clients.rs) asserts on
that and on what the simulator saw. An exception fails the script (exit status 1),
and with it the test.
"""

import json
import os
import sys
import tempfile

from google.auth import identity_pool

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def env(name):
    """A setting the Rust test passes; a missing one is the test's bug."""
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run this script through the Rust test")
    return value


def identity_pool_credentials(identity_url):
    """Workload identity federation, as a pod on another cloud would use it: an OIDC
    token file exchanged at the (simulated) Google STS for an access token. No key is
    involved; the token the clients send is one the simulator issued, so a Vertex
    endpoint with `auth = "issued"` accepts it."""
    token = tempfile.NamedTemporaryFile("w", suffix=".jwt", delete=False)
    token.write("eyJhbGciOiJSUzI1NiJ9.python-client-test.sig")
    token.close()
    info = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/123456/locations/global/"
        "workloadIdentityPools/crossbar/providers/ci",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{identity_url}/v1/token",
        "credential_source": {"file": token.name},
    }
    # From info, not load_credentials_from_file: that one also looks the project up
    # at cloudresourcemanager.googleapis.com, which a test machine cannot reach.
    return identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM])


def emit(result):
    """Reports what the client received."""
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
