"""Benchmarks: each module `benchmarks/<name>.py` has `run(quick: bool = False) -> dict[str, float]`
returning named figures (`*_ratio` figures: lower is better, compared side by side in one run) and
is runnable alone as `python -m benchmarks.<name>`. `python -m benchmarks.run` collects them all.
Benchmarks measure; they never assert timings."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["print_figures"]


def print_figures(name: str, figures: Mapping[str, float]) -> None:
    """Print one module's figures, one per line (what `python -m benchmarks.<name>` shows)."""
    width = max((len(k) for k in figures), default=0)
    print(f"{name}:")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {format_value(value)}")


def format_value(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value == 0 or 0.001 <= abs(value) < 1e6:
        return f"{value:.4g}" if abs(value) < 10 else f"{value:,.2f}"
    return f"{value:.3e}"
