"""The package's own exception hierarchy.

Every message says what was wrong and what to do about it, in one line, so the notebook layer can
show it without a traceback. Errors from the layer below (the anthropic SDK, SQLite, YAML) are
mapped into this tree once, at the boundary (`client.map_sdk_error`, the stores, `definitions`).

    ClaudeforceError
    ├── UsageError                 user mistakes: shown as one line, no traceback
    │   ├── UnknownNameError       unknown agent / skill / workflow (with "did you mean")
    │   ├── InvalidNameError       a name outside [a-z0-9-]+
    │   ├── EmptyTaskError
    │   ├── InvalidModelError
    │   ├── TemplateError          missing {{ variable }} or bad template
    │   ├── DefinitionError        malformed agent/skill/workflow file (cites file:line)
    │   ├── WorkflowError          cycles, unknown steps, missing inputs
    │   ├── BudgetError            a job that cannot fit its budget
    │   └── ConfigError            bad setting or missing key for backend=anthropic
    └── APIError                   the model service failed after retries
        ├── AuthenticationError
        ├── RateLimitError
        ├── OverloadedError
        ├── APITimeoutError
        ├── APIConnectionError
        ├── ServerError
        ├── BadRequestError
        └── CircuitOpenError       our breaker refused the call without sending it
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetError",
    "CircuitOpenError",
    "ClaudeforceError",
    "ConfigError",
    "DefinitionError",
    "EmptyTaskError",
    "InvalidModelError",
    "InvalidNameError",
    "OverloadedError",
    "RateLimitError",
    "ServerError",
    "TemplateError",
    "UnknownNameError",
    "UsageError",
    "WorkflowError",
    "did_you_mean",
]


class ClaudeforceError(Exception):
    """Base class. `error_type` is the short tag recorded in metrics rows."""

    error_type = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        if hint and message and message[-1].isalnum():
            message += "."  # "…after the fields. Fix it;" rather than "…after the fields Fix it;"
        super().__init__(f"{message} {hint}" if hint else message)


class UsageError(ClaudeforceError):
    error_type = "usage_error"


class UnknownNameError(UsageError, LookupError):
    error_type = "unknown_name"

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        known = sorted(known)
        hint = did_you_mean(name, known)
        if hint is None:
            listing = ", ".join(known[:8]) + (" …" if len(known) > 8 else "")
            hint = f"Known {kind}s: {listing}." if known else f"No {kind}s are defined."
        super().__init__(f"Unknown {kind} '{name}'.", hint=hint)


class InvalidNameError(UsageError, ValueError):
    error_type = "invalid_name"


class EmptyTaskError(UsageError, ValueError):
    error_type = "empty_task"


class InvalidModelError(UsageError, ValueError):
    error_type = "invalid_model"


class TemplateError(UsageError, KeyError):
    error_type = "template_error"

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class DefinitionError(UsageError, ValueError):
    error_type = "definition_error"


class WorkflowError(UsageError, ValueError):
    error_type = "workflow_error"


class BudgetError(UsageError, ValueError):
    error_type = "budget_exceeded"


class ConfigError(UsageError, ValueError):
    error_type = "config_error"


class APIError(ClaudeforceError):
    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.request_id = request_id
        super().__init__(message, hint=hint)


class AuthenticationError(APIError):
    error_type = "authentication_error"


class RateLimitError(APIError):
    error_type = "rate_limit"


class OverloadedError(APIError):
    error_type = "overloaded"


class APITimeoutError(APIError):
    error_type = "timeout"


class APIConnectionError(APIError):
    error_type = "connection_error"


class ServerError(APIError):
    error_type = "server_error"


class BadRequestError(APIError):
    error_type = "bad_request"


class CircuitOpenError(APIError):
    error_type = "circuit_open"


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """'Did you mean …?' for the closest known names, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=2, cutoff=0.6)
    if not matches:
        return None
    return "Did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
