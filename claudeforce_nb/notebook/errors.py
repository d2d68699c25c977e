"""One-line errors for magics: a tiny factory that builds IPython `UsageError`s tagged with an
`error_type`.

IPython prints an exception of exactly the class `UsageError` as "UsageError: message" without a
traceback (a subclass would get the full traceback), so the factory returns plain instances and
carries the tag as an attribute. User mistakes raised deeper down as our own `ClaudeforceError`s
are turned into such one-liners at the magic boundary, unless `short_errors` is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from IPython.core.error import UsageError

from ..errors import ClaudeforceError

__all__ = ["cancelled", "short_errors", "usage_error"]


def usage_error(message: str, error_type: str = "usage_error") -> UsageError:
    """A one-line error for the notebook, tagged with the metrics-style `error_type`."""
    exc = UsageError(message)
    exc.error_type = error_type  # type: ignore[attr-defined]
    return exc


def cancelled(what: str) -> UsageError:
    return usage_error(f"Cancelled: {what} was interrupted (the metrics row says error_type=cancelled).",
                       "cancelled")


@contextlib.contextmanager
def short_errors(enabled: bool) -> Iterator[None]:
    """Turn our errors into one-line UsageErrors while `enabled`; anything else (a real bug)
    keeps its traceback."""
    try:
        yield
    except ClaudeforceError as exc:
        if not enabled:
            raise
        raise usage_error(str(exc), exc.error_type) from exc
