"""The progress bar of a map job: done/total, rate, ETA, running cost and failures.

In a Jupyter kernel with a widget frontend it is an ipywidgets IntProgress + Label; elsewhere a
tqdm bar on stderr. IPython is only looked at when the process already imported it (a kernel or
a terminal IPython), so a plain script never imports it and core keeps no notebook dependency.
The bar is created by the thread that calls `map_agent` (a widget must be displayed from the
cell's thread) and may then be advanced from the job's event-loop thread.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .results import AgentResult

__all__ = ["Progress", "make_progress"]


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts results; subclasses draw them. This base draws nothing (progress=False)."""

    def __init__(self, total: int, desc: str = "") -> None:
        self.total = total
        self.desc = desc
        self.done = 0
        self.failed = 0
        self.cost = 0.0
        self.t0 = time.perf_counter()
        self.note = ""

    def advance(self, result: AgentResult) -> None:
        self.done += 1
        self.failed += not result.success
        self.cost += result.cost_usd or 0.0
        self.draw()

    def status(self, note: str) -> None:
        """A phase that is not per item (e.g. "batch in_progress")."""
        self.note = note
        self.draw()

    def text(self) -> str:
        elapsed = time.perf_counter() - self.t0
        parts = [f"{self.done}/{self.total}"]
        if self.done and self.done < self.total:
            parts.append(f"ETA {_fmt_s(elapsed / self.done * (self.total - self.done))}")
        parts.append(f"${self.cost:.4f}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)

    def draw(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Tqdm(Progress):
    def __init__(self, total: int, desc: str = "") -> None:
        super().__init__(total, desc)
        from tqdm.std import tqdm  # the plain bar: tqdm.auto would pick its own widget in a kernel

        self.bar = tqdm(total=total, desc=desc or None, unit="item", file=sys.stderr, mininterval=0.2)

    def draw(self) -> None:
        post = f"${self.cost:.4f}" + (f", {self.failed} failed" if self.failed else "")
        self.bar.set_postfix_str(post + (f", {self.note}" if self.note else ""), refresh=False)
        self.bar.update(self.done - self.bar.n)  # tqdm throttles the redraws itself

    def status(self, note: str) -> None:
        super().status(note)
        self.bar.refresh()

    def close(self) -> None:
        self.draw()
        self.bar.close()


class _Widget(Progress):
    """IntProgress + Label; redrawn at most 10 times a second (each redraw is a comm message)."""

    def __init__(self, total: int, desc: str = "") -> None:
        super().__init__(total, desc)
        import ipywidgets as w
        from IPython.display import display

        self.bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=desc)
        self.label = w.Label(value=self.text())
        self.box = w.HBox([self.bar, self.label])
        self._last = 0.0
        display(self.box)

    def draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        self.bar.value = self.done
        self.label.value = self.text()

    def close(self) -> None:
        self.draw(force=True)
        self.bar.bar_style = "warning" if self.failed else "success"


def _widget_frontend() -> bool:
    ipython: Any = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_progress(total: int, enabled: bool = True, desc: str = "") -> Progress:
    if not enabled:
        return Progress(total, desc)
    if _widget_frontend():
        try:
            return _Widget(total, desc)
        except ImportError:
            pass
    return _Tqdm(total, desc)
