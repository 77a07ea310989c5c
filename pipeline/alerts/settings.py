"""The alerts config (``conf/alerts/``) read and checked, and the secrets it names.

The secrets (the webhook URL, the SMTP password) are read from the environment variables the
config names, only when a message is sent, and :func:`redact` takes them out of any text that
could reach a log, an error, a report or the warehouse.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from pipeline.command import UsageError

EVENTS = (
    "run_failed", "gate_failed", "lock_taken_over", "drift", "backup_failed", "backup_stale", "box_scores_stale",
    "predictions_due", "model_worse",
)  # fmt: skip
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MONTH_DAY = re.compile(r"(\d{2})-(\d{2})")
CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
REDACTED = "<redacted>"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    starttls: bool
    ca_file: str | None
    username: str | None
    password_env: str | None
    sender: str
    recipients: tuple[str, ...]
    timeout_seconds: float


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = False
    webhook_env: str | None = None
    webhook_timeout_seconds: float = 10.0
    smtp: SmtpSettings | None = None
    attempts: int = 3
    retry_backoff_seconds: float = 2.0
    docs_url: str | None = None
    events: Mapping[str, bool] = field(default_factory=lambda: dict.fromkeys(EVENTS, True))
    backup_max_age_hours: float = 36.0
    stale_after_days: int = 2
    season_window: tuple[tuple[int, int], tuple[int, int]] = ((10, 15), (6, 30))
    predictions_due_hours: float = 2.0
    first_tipoff: dt.time = dt.time(19, 0)
    model_window_dates: int = 14

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("webhook", self.webhook_env), ("email", self.smtp)) if on)

    def wants(self, kind: str) -> bool:
        """Whether an event of ``kind`` is sent (alerts on, a channel set, the event on)."""
        return self.enabled and bool(self.channels) and bool(self.events.get(kind))

    def in_season(self, day: dt.date) -> bool:
        """``day`` (a month and day) falls in ``season_window`` (which may wrap the new year)."""
        (m0, d0), (m1, d1) = self.season_window
        at = (day.month, day.day)
        return (m0, d0) <= at <= (m1, d1) if (m0, d0) <= (m1, d1) else at >= (m0, d0) or at <= (m1, d1)

    # -- secrets --------------------------------------------------------------------------------

    def webhook_url(self) -> str:
        return _secret(self.webhook_env, "alerts.webhook.url_env")

    def smtp_password(self) -> str | None:
        return _secret(self.smtp.password_env, "alerts.smtp.password_env") if self.smtp and self.smtp.password_env else None

    def secrets(self) -> list[str]:
        """The secret values set in the environment now, and the parts of a URL a message may
        quote alone (its path and query: a Slack hook's token is in its path)."""
        found = []
        for name in (self.webhook_env, self.smtp.password_env if self.smtp else None):
            value = os.environ.get(name or "") if name else None
            if value:
                found.append(value)
                parts = urlsplit(value)
                tail = parts.path + (f"?{parts.query}" if parts.query else "")
                if parts.netloc and len(tail) > 1:
                    found.append(tail)
        return sorted(found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, REDACTED)
        return text


class MissingSecret(RuntimeError):
    """An environment variable the alerts config names is not set."""


def _secret(name: str | None, key: str) -> str:
    value = os.environ.get(name or "")
    if not value:
        raise MissingSecret(f"the environment variable {name} ({key}) is not set")
    return value


def _plain(cfg: DictConfig | Mapping | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)  # type: ignore[return-value]


def load_settings(cfg: DictConfig | Mapping | None) -> AlertSettings:
    """``cfg.alerts`` checked: every mistake is reported at once, as the command's usage error."""
    raw = _plain(cfg)
    if not raw:
        return AlertSettings()
    errors: list[str] = []

    def env_name(value: object, key: str) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
            # The value is not repeated: it may be the secret itself, put here by mistake.
            errors.append(f"alerts.{key}: the name of an environment variable (letters, digits, _), not the secret itself, which never goes in the config")
            return None
        return value

    def number(value: object, key: str, *, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            errors.append(f"alerts.{key}: a number of at least {minimum:g}, not {value!r}")
            return minimum
        return float(value)

    def month_day(value: object, key: str) -> tuple[int, int]:
        match = MONTH_DAY.fullmatch(str(value))
        try:
            if match:
                dt.date(2024, int(match[1]), int(match[2]))  # a leap year: 02-29 is a day
                return int(match[1]), int(match[2])
        except ValueError:
            pass
        errors.append(f"alerts.{key}: a month and day as MM-DD, not {value!r}")
        return (1, 1)

    webhook = raw.get("webhook") or {}
    smtp_raw = raw.get("smtp") or {}
    smtp = None
    if smtp_raw.get("host"):
        recipients = smtp_raw.get("to") or []
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients:
            errors.append("alerts.smtp.to: give at least one recipient when alerts.smtp.host is set")
        smtp = SmtpSettings(
            host=str(smtp_raw["host"]),
            port=int(number(smtp_raw.get("port", 587), "smtp.port", minimum=1)),
            starttls=bool(smtp_raw.get("starttls", True)),
            ca_file=smtp_raw.get("ca_file") or None,
            username=smtp_raw.get("username") or None,
            password_env=env_name(smtp_raw.get("password_env"), "smtp.password_env"),
            sender=str(smtp_raw.get("from") or "nba-pipeline@localhost"),
            recipients=tuple(str(r) for r in recipients),
            timeout_seconds=number(smtp_raw.get("timeout_seconds", 10), "smtp.timeout_seconds", minimum=0.1),
        )
    events = dict.fromkeys(EVENTS, True)
    for name, on in (raw.get("events") or {}).items():
        if name not in EVENTS:
            errors.append(f"alerts.events.{name}: no such event; known: {', '.join(EVENTS)}")
        else:
            events[name] = bool(on)
    window = raw.get("season_window") or {}
    clock = CLOCK.fullmatch(str(raw.get("first_tipoff", "19:00")))
    if not clock or int(clock[1]) > 23:
        errors.append(f"alerts.first_tipoff: a time of day as HH:MM, not {raw.get('first_tipoff')!r}")
    attempts = number(raw.get("attempts", 3), "attempts", minimum=1)
    settings = AlertSettings(
        enabled=bool(raw.get("enabled", False)),
        webhook_env=env_name(webhook.get("url_env"), "webhook.url_env"),
        webhook_timeout_seconds=number(webhook.get("timeout_seconds", 10), "webhook.timeout_seconds", minimum=0.1),
        smtp=smtp,
        attempts=int(attempts),
        retry_backoff_seconds=number(raw.get("retry_backoff_seconds", 2.0), "retry_backoff_seconds"),
        docs_url=(str(raw["docs_url"]).rstrip("/") if raw.get("docs_url") else None),
        events=events,
        backup_max_age_hours=number(raw.get("backup_max_age_hours", 36), "backup_max_age_hours"),
        stale_after_days=int(number(raw.get("stale_after_days", 2), "stale_after_days")),
        season_window=(month_day(window.get("start", "10-15"), "season_window.start"), month_day(window.get("end", "06-30"), "season_window.end")),
        predictions_due_hours=number(raw.get("predictions_due_hours", 2), "predictions_due_hours"),
        first_tipoff=dt.time(int(clock[1]), int(clock[2])) if clock and int(clock[1]) <= 23 else dt.time(19, 0),
        model_window_dates=int(number(raw.get("model_window_dates", 14), "model_window_dates", minimum=1)),
    )
    if errors:
        raise UsageError("alerts config:\n  " + "\n  ".join(errors))
    return settings


class RedactingFilter(logging.Filter):
    """Takes the alerts' secrets out of every record a handler writes (the run's log file and
    the terminal): a message or an exception that quoted one shows it as ``<redacted>``."""

    def __init__(self, settings: AlertSettings):
        super().__init__()
        self.settings = settings

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.settings.secrets()
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if any(s in message for s in secrets) or (record.exc_text and any(s in record.exc_text for s in secrets)):
            record.msg, record.args = self.settings.redact(message), None
            if record.exc_text:
                record.exc_text = self.settings.redact(record.exc_text)
        return True
