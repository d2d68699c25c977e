"""claudeforce_nb — run Claude agents from Jupyter cells: `%%agent`, `%workflow`, routing,
costs and analytics, offline on a built-in simulator when no ANTHROPIC_API_KEY is set.

Importing the package is cheap: every public name below is resolved on first use, so
`import claudeforce_nb` and `%load_ext claudeforce_nb` import no anthropic, pandas, plotly,
ipywidgets or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .analytics import frames as analytics  # noqa: F401
    from .analytics import plots as plots  # noqa: F401
    from .core.orchestrator import arun_agent as arun_agent
    from .core.orchestrator import run_agent as run_agent
    from .core.results import AgentResult as AgentResult
    from .core.results import Route as Route
    from .core.routing import route as route
    from .core.skills import select_skills as select_skills

# public name -> "module:attribute" (attribute empty: the module itself)
_LAZY: dict[str, str] = {
    "run_agent": "claudeforce_nb.core.orchestrator:run_agent",
    "arun_agent": "claudeforce_nb.core.orchestrator:arun_agent",
    "route": "claudeforce_nb.core.routing:route",
    "select_agent": "claudeforce_nb.core.selection:select_agent",
    "warm_up": "claudeforce_nb.core.selection:warm_up",
    "select_skills": "claudeforce_nb.core.skills:select_skills",
    "evaluate_router": "claudeforce_nb.core.evaluation:evaluate_router",
    "evaluate_selector": "claudeforce_nb.core.evaluation:evaluate_selector",
    "run_workflow": "claudeforce_nb.core.workflow:run_workflow",
    "arun_workflow": "claudeforce_nb.core.workflow:arun_workflow",
    "map_agent": "claudeforce_nb.core.batch:map_agent",
    "amap_agent": "claudeforce_nb.core.batch:amap_agent",
    "estimate_cost": "claudeforce_nb.core.batch:estimate_cost",
    "batch_results": "claudeforce_nb.core.batch:batch_results",
    "status": "claudeforce_nb.core.resilience:status",
    "metrics": "claudeforce_nb.api:metrics",
    "agents": "claudeforce_nb.api:agents",
    "skills": "claudeforce_nb.api:skills",
    "workflows": "claudeforce_nb.api:workflows",
    "dashboard": "claudeforce_nb.analytics.dashboard:dashboard",
    "configure": "claudeforce_nb.config:configure",
    "get_settings": "claudeforce_nb.config:get_settings",
    "Settings": "claudeforce_nb.config:Settings",
    "AgentResult": "claudeforce_nb.core.results:AgentResult",
    "Route": "claudeforce_nb.core.results:Route",
    "Candidate": "claudeforce_nb.core.selection:Candidate",
    "WorkflowResult": "claudeforce_nb.core.workflow:WorkflowResult",
    "ClaudeforceError": "claudeforce_nb.errors:ClaudeforceError",
    "errors": "claudeforce_nb.errors:",
    "analytics": "claudeforce_nb.analytics:",
    "plots": "claudeforce_nb.analytics.plots:",
    "memory": "claudeforce_nb.store.memory:",
    "demo": "claudeforce_nb.demo:",
    "pricing_table": "claudeforce_nb.api:pricing_table",
}

__all__ = sorted([*_LAZY, "__version__", "load_ipython_extension", "unload_ipython_extension"])


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'claudeforce_nb' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext claudeforce_nb`: registers the magics and nothing else."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
