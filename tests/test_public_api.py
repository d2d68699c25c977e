"""The public names of DESIGN.md exist, resolve lazily, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import claudeforce_nb as cf

DESIGN_NAMES = [
    "run_agent", "arun_agent", "route", "select_agent", "select_skills", "run_workflow", "map_agent",
    "metrics", "analytics", "plots", "agents", "skills", "workflows", "dashboard", "memory", "demo",
    "warm_up", "evaluate_router", "evaluate_selector", "estimate_cost", "batch_results", "status",
    "AgentResult", "Route", "WorkflowResult", "Candidate",
]


def test_every_exported_name_resolves() -> None:
    for name in cf.__all__:
        assert getattr(cf, name) is not None, name


def test_design_public_api_is_exported() -> None:
    missing = [n for n in DESIGN_NAMES if n not in cf.__all__]
    assert missing == []


def test_analytics_and_plots_expose_the_design_functions() -> None:
    for name in ("summary", "by_agent", "costs", "trends", "savings", "export", "check_regression", "rollup"):
        assert callable(getattr(cf.analytics, name)), name
    for name in ("latency_percentiles", "model_mix", "cost_savings"):
        assert callable(getattr(cf.plots, name)), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        cf.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_does_not_load_heavy_dependencies() -> None:
    code = (
        "import sys, claudeforce_nb\n"
        "heavy = [m for m in ('anthropic', 'pandas', 'plotly', 'ipywidgets', 'torch', 'httpx2') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_analytics_keeps_the_tables_after_an_analytics_submodule_is_imported() -> None:
    # Importing claudeforce_nb.analytics.dashboard sets the package as claudeforce_nb.analytics;
    # cf.analytics.summary must still be the table function, before and after.
    code = (
        "import claudeforce_nb as cf\n"
        "import claudeforce_nb.analytics.dashboard\n"
        "from claudeforce_nb.analytics import frames, plots\n"
        "assert cf.analytics.summary is frames.summary and cf.analytics.by_agent is frames.by_agent\n"
        "assert plots.model_mix is cf.plots.model_mix\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
