"""Sending messages: a webhook POST of Slack-compatible JSON (``{"text": ...}``) and an e-mail
over SMTP (STARTTLS, login), each tried ``alerts.attempts`` times with a doubling backoff.

A failure is logged and recorded (:class:`Delivery`), never raised: an alert that cannot be
delivered does not change what the run did or its exit code. Every error text is redacted
(:meth:`AlertSettings.redact`) before it is kept anywhere.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Callable, Sequence

import requests

from pipeline.alerts.events import Message
from pipeline.alerts.settings import AlertSettings, MissingSecret
from pipeline.state import utcnow

log = logging.getLogger("pipeline.alerts")

ALERTS_LOG = "alerts.jsonl"


@dataclass(frozen=True)
class Delivery:
    """What became of one message on one channel."""

    kind: str
    channel: str  # webhook | email
    delivered: bool
    attempts: int
    error: str | None = None
    at: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def deliver(messages: Sequence[Message], settings: AlertSettings, *, log_dir: str | Path | None = None) -> list[Delivery]:
    """Every message on every channel set; the outcomes are also appended to
    ``<log_dir>/alerts.jsonl`` (one JSON object per line)."""
    senders: list[tuple[str, Callable[[Message], None]]] = []
    if settings.webhook_env:
        senders.append(("webhook", lambda m: post_webhook(m, settings)))
    if settings.smtp:
        senders.append(("email", lambda m: send_mail(m, settings)))
    outcomes = [_tried(message, channel, send, settings) for message in messages for channel, send in senders]
    if log_dir is not None and outcomes:
        path = Path(log_dir) / ALERTS_LOG
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as out:
                for outcome in outcomes:
                    out.write(json.dumps(outcome.to_dict()) + "\n")
        except OSError as exc:
            log.warning("could not record the alerts' deliveries in %s: %s", path, exc.strerror)
    return outcomes


def _tried(message: Message, channel: str, send: Callable[[Message], None], settings: AlertSettings) -> Delivery:
    error = None
    for attempt in range(1, settings.attempts + 1):
        try:
            send(message)
        except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
            error = settings.redact(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, MissingSecret):  # no attempt can succeed
                return _failed(message, channel, attempt, error)
            if attempt < settings.attempts:
                delay = settings.retry_backoff_seconds * 2 ** (attempt - 1)
                log.debug("alert %s by %s: attempt %d failed (%s); again in %.1fs", message.kind, channel, attempt, error, delay)
                time.sleep(delay)
            continue
        log.info("alert sent by %s: %s", channel, message.subject)
        return Delivery(message.kind, channel, True, attempt, None, _now())
    return _failed(message, channel, settings.attempts, error)


def _failed(message: Message, channel: str, attempts: int, error: str | None) -> Delivery:
    log.warning("alert %r NOT delivered by %s after %d attempt(s): %s", message.subject, channel, attempts, error)
    return Delivery(message.kind, channel, False, attempts, error, _now())


def _now() -> str:
    return utcnow().isoformat(timespec="seconds") + "Z"


def post_webhook(message: Message, settings: AlertSettings) -> None:
    """POST ``{"text": ...}``: what Slack's and Mattermost's incoming webhooks take."""
    response = requests.post(settings.webhook_url(), json={"text": message.text}, timeout=settings.webhook_timeout_seconds)
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"the webhook answered HTTP {response.status_code}: {response.text[:200]}")


def send_mail(message: Message, settings: AlertSettings) -> None:
    smtp = settings.smtp
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(smtp.recipients)
    mail.set_content(message.text)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as server:
        server.ehlo()
        if smtp.starttls:
            server.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
            server.ehlo()
        if smtp.username:
            server.login(smtp.username, settings.smtp_password() or "")
        server.send_message(mail)
