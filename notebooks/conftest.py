"""nbval runs each notebook here in its own kernel (`make test`). Before the first cell of a
notebook starts that kernel, the environment is made the one `refresh.py` saved the outputs in:
a fresh CLAUDEFORCE_HOME (no answer comes from an earlier run's cache), no ANTHROPIC_* or other
CLAUDEFORCE_* variable (the simulator answers), no simulated latency. The notebooks fix the
simulator's seed themselves. The previous environment comes back after the notebook's last cell."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest
from refresh import SIM_SPEED

from claudeforce_nb.demo import notebook_env

_saved: dict[str, Any] = {}  # the notebook being run, its home, and the environment before it


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    notebook = item.parent
    if not str(item.path).endswith(".ipynb") or _saved.get("notebook") is notebook:
        return
    home = tempfile.mkdtemp(prefix="claudeforce-nbval-")
    _saved.update(notebook=notebook, home=home, environ=dict(os.environ))
    env = notebook_env(home)
    env["CLAUDEFORCE_SIM_SPEED"] = str(SIM_SPEED)
    os.environ.clear()
    os.environ.update(env)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _saved.get("notebook") is not item.parent or (nextitem is not None and nextitem.parent is item.parent):
        return
    os.environ.clear()
    os.environ.update(_saved.pop("environ"))
    shutil.rmtree(_saved.pop("home"), ignore_errors=True)
    _saved.pop("notebook")
