"""Offline Claude at the HTTP layer.

`get_simulator()` is the process-wide simulator built from the settings (CLAUDEFORCE_SIM_*);
`use_simulator(sim)` swaps in another one (tests script faults with `sim.enqueue`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from ..config import get_settings
from .engine import FAULT_KINDS, Reply, Simulator, parse_faults

__all__ = ["FAULT_KINDS", "Reply", "Simulator", "get_simulator", "parse_faults", "use_simulator"]

_lock = threading.Lock()
_default: tuple[tuple[object, ...], Simulator] | None = None
_forced: Simulator | None = None


def get_simulator() -> Simulator:
    global _default
    if _forced is not None:
        return _forced
    s = get_settings()
    key = (s.sim_latency_ms, s.sim_speed, s.sim_faults, s.sim_seed)
    with _lock:
        if _default is None or _default[0] != key:
            _default = (key, Simulator(latency_ms=s.sim_latency_ms, speed=s.sim_speed, faults=s.sim_faults,
                                       seed=s.sim_seed))
        return _default[1]


@contextlib.contextmanager
def use_simulator(sim: Simulator) -> Iterator[Simulator]:
    global _forced
    previous, _forced = _forced, sim
    try:
        yield sim
    finally:
        _forced = previous
