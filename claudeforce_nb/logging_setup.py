"""Opt-in log output for the `claudeforce_nb` loggers, with the structured fields shown.

The library logs through stdlib `logging` under `claudeforce_nb.*` and never prints. Per call it
attaches fields with `extra=` (agent, model, task_hash, duration_ms, tokens, cost, attempts,
error_type) — never the API key, never the prompt or answer text. `enable_logging()` adds one
handler whose formatter shows those fields as `key=value` (or one JSON object per line), so a
notebook or a job log can follow every call.

Why no `NullHandler` on the package logger: with no handler anywhere, Python's last-resort handler
prints WARNING and above to stderr, which is exactly how the one-time "using the offline
simulator" notice and the damaged-file warnings reach a user who configured nothing (in Jupyter
they appear under the cell). A NullHandler would silence them. DEBUG/INFO stay quiet by default
because the last-resort handler only passes warnings.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import IO, Any

__all__ = ["FIELDS", "StructuredFormatter", "disable_logging", "enable_logging"]

LOGGER = "claudeforce_nb"
# The structured fields the package attaches with `extra=`, in display order.
FIELDS = ("agent", "model", "task_hash", "duration_ms", "tokens", "cost", "attempts", "error_type")
_KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def _redact(text: str) -> str:
    """Defence in depth: whatever a third-party message contains, the key never reaches output."""
    for var in _KEY_VARS:
        secret = os.environ.get(var)
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, f"<{var} redacted>")
    return text


class StructuredFormatter(logging.Formatter):
    """`HH:MM:SS LEVEL logger: message  agent=… model=… …`, or with `as_json=True` one JSON object
    per record (timestamp, level, logger, message and the fields present)."""

    def __init__(self, *, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}
        message = record.getMessage()
        if record.exc_info and not self.as_json:
            message += "\n" + self.formatException(record.exc_info)
        if self.as_json:
            data: dict[str, Any] = {
                "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                **fields,
            }
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
            return _redact(json.dumps(data, default=str, ensure_ascii=False))
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = "  " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else ""
        return _redact(f"{stamp} {record.levelname} {record.name}: {message}{extra}")


_handler: logging.Handler | None = None


def enable_logging(level: int | str = "INFO", *, as_json: bool = False,
                   stream: IO[str] | None = None) -> logging.Handler:
    """Show the package's log records at `level` and above on `stream` (default stderr). Calling it
    again replaces the previous handler rather than adding a second one."""
    global _handler
    logger = logging.getLogger(LOGGER)
    disable_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(as_json=as_json))
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    _handler = handler
    return handler


def disable_logging() -> None:
    """Remove the handler `enable_logging` added (the last-resort warnings come back)."""
    global _handler
    if _handler is not None:
        logger = logging.getLogger(LOGGER)
        logger.removeHandler(_handler)
        logger.setLevel(logging.NOTSET)
        _handler = None
