"""Alerts: what is wrong (:mod:`.events`), said once per kind of event per run, by webhook and
e-mail (:mod:`.delivery`), as ``conf/alerts/`` asks (:mod:`.settings`); ``task=watch`` looks for
what only time reveals (:mod:`.watch`)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Sequence

from pipeline.alerts.delivery import Delivery, deliver
from pipeline.alerts.events import Event, messages
from pipeline.alerts.settings import AlertSettings, RedactingFilter, load_settings

__all__ = ["AlertSettings", "Delivery", "Event", "RedactingFilter", "dispatch", "load_settings"]

log = logging.getLogger("pipeline.alerts")


def dispatch(events: Sequence[Event], settings: AlertSettings, *, run_id: str, task: str, log_dir: str | Path | None) -> list[Delivery]:
    """Send one message per kind of event that ``settings`` wants; returns what became of each.
    Never raises: a delivery that fails is logged and recorded."""
    wanted = [e for e in events if settings.wants(e.kind)]
    for event in events:
        log.info("alert event %s: %s", event.kind, event.title)
    if not wanted:
        return []
    try:
        outbox = messages(wanted, run_id=run_id, task=task, host=socket.gethostname(), docs_url=settings.docs_url)
        return deliver(outbox, settings, log_dir=log_dir)
    except Exception as exc:  # noqa: BLE001 - alerting must never fail the run it reports on
        log.warning("alerts could not be sent: %s", settings.redact(f"{type(exc).__name__}: {exc}"))
        return []
