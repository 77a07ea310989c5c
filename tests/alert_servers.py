"""Real local servers the alerts are sent to in tests: an HTTP server on a loopback port that
keeps every webhook POST, and an SMTP server (aiosmtpd) that keeps every mail, with STARTTLS
(a certificate made for 127.0.0.1, trusted through ``alerts.smtp.ca_file``) and a login.

Both bind port 0 and report the port the kernel gave; a test waits for what it expects on a
condition, never a sleep. A pytest plugin (conftest's ``pytest_plugins``): the fixtures serve
every test module, one server each per module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

WAIT_SECONDS = 60
# The secrets the tests plant, and search every output and table for.
WEBHOOK_TOKEN = "T0ALERTS/B0TEST/s3cr3t-w3bh00k-t0k3n"
SMTP_USER = "nba-alerts"
SMTP_PASSWORD = "pa55-w0rd-n0t-t0-b3-s33n"
WEBHOOK_ENV = "NBA_PIPELINE_TEST_WEBHOOK_URL"
PASSWORD_ENV = "NBA_PIPELINE_TEST_SMTP_PASSWORD"


@dataclass
class Inbox:
    """What a server received, with a condition to wait on."""

    items: list = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, item) -> None:
        with self.changed:
            self.items.append(item)
            self.changed.notify_all()

    def wait_for(self, predicate, what: str) -> list:
        """The items once ``predicate(items)`` holds; fails after WAIT_SECONDS naming ``what``."""
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(list(self.items)), timeout=WAIT_SECONDS):
                raise AssertionError(f"no {what} within {WAIT_SECONDS}s; got {self.items}")
            return list(self.items)

    def clear(self) -> None:
        with self.changed:
            self.items.clear()


@dataclass
class WebhookServer:
    port: int
    inbox: Inbox
    status: list  # the HTTP status answered, settable by a test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{WEBHOOK_TOKEN}"

    def texts(self) -> list[str]:
        return [post["text"] for post in self.inbox.items]


@pytest.fixture(scope="module")
def webhook_server():
    inbox, status = Inbox(), [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            inbox.add({"path": self.path, **json.loads(body)})
            self.send_response(status[0])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield WebhookServer(server.server_address[1], inbox, status)
    server.shutdown()
    server.server_close()


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    ca_file: Path

    def messages(self) -> list[EmailMessage]:
        return list(self.inbox.items)

    def overrides(self, recipients: str = "team@example.com") -> list[str]:
        return [
            "alerts.smtp.host=127.0.0.1", f"alerts.smtp.port={self.port}", "alerts.smtp.starttls=true", f"alerts.smtp.ca_file={self.ca_file}",
            f"alerts.smtp.username={SMTP_USER}", f"alerts.smtp.password_env={PASSWORD_ENV}", f"alerts.smtp.to=[{recipients}]",
        ]  # fmt: skip


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory):
    """aiosmtpd on a loopback port: STARTTLS required, then a login with SMTP_USER / SMTP_PASSWORD."""
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    inbox = Inbox()
    cert, key = self_signed(tmp_path_factory.mktemp("smtp"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)  # headers unfolded, body decoded
            inbox.add(message)
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok)

    loop = asyncio.new_event_loop()
    sock = socket.create_server(("127.0.0.1", 0))
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        factory = lambda: SMTP(Handler(), require_starttls=True, tls_context=tls, authenticator=authenticate, auth_require_tls=True)  # noqa: E731
        server = loop.run_until_complete(loop.create_server(factory, sock=sock))
        started.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(WAIT_SECONDS), "the SMTP server did not start"
    yield SmtpServer(sock.getsockname()[1], inbox, cert)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT_SECONDS)


def alert_overrides(webhook: WebhookServer, smtp: SmtpServer) -> list[str]:
    """Alerts on, to both servers, retried without waiting long."""
    return ["alerts.enabled=true", f"alerts.webhook.url_env={WEBHOOK_ENV}", "alerts.retry_backoff_seconds=0.05", *smtp.overrides()]


def alert_env(webhook: WebhookServer) -> dict[str, str]:
    return {WEBHOOK_ENV: webhook.url, PASSWORD_ENV: SMTP_PASSWORD}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
