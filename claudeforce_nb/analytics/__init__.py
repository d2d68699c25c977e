"""Analytics over the metrics frame: tables (`frames`, public as `cf.analytics`), Plotly charts
(`plots`, public as `cf.plots`), the notebook dashboard (`dashboard`) and the terminal verbs
(`cli`). Nothing is imported here, so `import claudeforce_nb` stays free of pandas and plotly.

`cf.analytics` is this package, and the table functions of `frames` (`summary`, `by_agent`, …)
are read through it on first use. It has to be the package, not `frames` itself: importing any
submodule (`cf.dashboard` does) makes Python set `claudeforce_nb.analytics` to the package,
which would otherwise hide the tables."""

from __future__ import annotations

import importlib
from typing import Any

_FRAMES = "claudeforce_nb.analytics.frames"


def __getattr__(name: str) -> Any:
    frames = importlib.import_module(_FRAMES)
    if name in frames.__all__:
        value = getattr(frames, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'claudeforce_nb.analytics' has no attribute {name!r}")


def __dir__() -> list[str]:
    frames = importlib.import_module(_FRAMES)
    return sorted({*globals(), *frames.__all__})
