"""Credentials never appear in the pipeline's output, logs, reports or config dumps (README, BigQuery).

A run is pointed at BigQuery itself (no emulator endpoints) with a service-account key file, the
way production authenticates (``GOOGLE_APPLICATION_CREDENTIALS``), whose private key carries a
marker. Its token endpoint is a local HTTP server that refuses the key as Google refuses a revoked
one (HTTP 400 ``invalid_grant``), so the run fails to authenticate, as it must without network;
a second key cannot even be read. Nothing the run prints or writes may hold the marker.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import run_in_process

pytestmark = pytest.mark.slow  # runs the pipeline's tasks, in the test process

MARKER = "MARKER-7d41c2-private-key-material"
BIGQUERY = ["warehouse=bigquery", "warehouse.project=nba-credentials-test"]


class TokenEndpoint:
    """OAuth's token endpoint, refusing every key: HTTP 400 invalid_grant. Counts the requests."""

    def __init__(self) -> None:
        endpoint = self
        self.requests = 0

        class Refuse(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests += 1
                body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)  # port 0: the kernel's pick, held from here on
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "TokenEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint():
    with TokenEndpoint() as endpoint:
        yield endpoint


def service_account_key(path: Path, token_uri: str, *, readable: bool) -> Path:
    """A service-account key file whose ``private_key`` holds MARKER: a real RSA key with the marker
    on a line before its PEM block (which PEM readers skip), or no key at all."""
    if readable:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        private_key = f"{MARKER}\n{pem}"
    else:
        private_key = f"-----BEGIN PRIVATE KEY-----\n{MARKER}\n-----END PRIVATE KEY-----\n"
    info = {
        "type": "service_account",
        "project_id": "nba-credentials-test",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": private_key,
        "client_email": "pipeline@nba-credentials-test.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


@pytest.mark.parametrize("readable", [True, False], ids=["refused key", "unreadable key"])
@pytest.mark.parametrize("task", ["run", "status", "validate"])
def test_a_service_account_key_never_appears_in_output_logs_or_reports(tmp_path, token_endpoint, task, readable):
    workdir = tmp_path / "run"
    workdir.mkdir()
    key = service_account_key(tmp_path / "service-account.json", token_endpoint.url, readable=readable)
    assert MARKER in key.read_text()
    run = run_in_process(workdir, f"task={task}", warehouse=BIGQUERY, env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert run.returncode == 1, run.output
    assert "error:" in run.output
    if readable:
        assert token_endpoint.requests > 0  # the key was used, and refused
        assert "invalid_grant" in run.output  # the refusal is said, the key is not
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written)  # the run's log, with its config dump
    for text in [run.output, *(p.read_text(errors="replace") for p in written)]:
        assert MARKER not in text
