"""Message Batches endpoints of the simulator (create, retrieve, results, cancel)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Simulator


def install_batches(sim: Simulator) -> None:
    """Register the batch routes on `sim`. (Filled in by the Message Batches work, Step 7.)"""
    return None
