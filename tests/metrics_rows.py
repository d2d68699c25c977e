"""Hand-made metrics records for the analytics tests: plain dicts in the log's schema, so a test
can compute the expected numbers from the same rows in plain Python, without our helpers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from claudeforce_nb.store.metrics import MetricsLog

AGENTS = ("python-expert", "sql-expert", "code-reviewer", "data-analyst")
MODELS = {"haiku": "claude-haiku-5-5", "sonnet": "claude-sonnet-5-5", "opus": "claude-opus-5-5"}
# made-up USD per call, by tier: only sums and ratios of them are checked
_COST = {"haiku": 0.001, "sonnet": 0.004, "opus": 0.02}


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def make_rows(n: int, *, seed: int = 0, start: datetime | None = None, hours: float = 48.0,
              agents: tuple[str, ...] = AGENTS, fail_share: float = 0.1, **fixed: Any) -> list[dict[str, Any]]:
    """`n` calls spread at random over `hours` from `start` (default: `hours` ago), sorted by time.
    Keyword arguments pin a field to one value for every row."""
    rng = random.Random(seed)
    start = start or datetime.now(timezone.utc) - timedelta(hours=hours)
    offsets = sorted(rng.uniform(0, hours * 3600) for _ in range(n))
    rows = []
    for i, off in enumerate(offsets):
        tier = rng.choice(("haiku", "haiku", "sonnet", "opus"))
        ok = rng.random() >= fail_share
        cached = ok and rng.random() < 0.1
        tin, tout = (0, 0) if not ok else (rng.randint(50, 3000), rng.randint(10, 900))
        cr = rng.choice((0, 0, 1024)) if ok else 0
        cw = rng.choice((0, 0, 0, 2048)) if ok else 0
        cost = 0.0 if cached or not ok else round(_COST[tier] * (1 + rng.random()), 6)
        rows.append({
            "timestamp": iso(start + timedelta(seconds=off)),
            "agent_name": rng.choice(agents),
            "task_hash": f"h{seed}-{i}",
            "success": ok,
            "execution_time_ms": round(rng.lognormvariate(7.5, 0.8), 3),
            "ttft_ms": round(rng.uniform(100, 900), 3),
            "model": MODELS[tier],
            "tier": tier,
            "input_tokens": tin,
            "output_tokens": tout,
            "cache_read_tokens": cr,
            "cache_write_tokens": cw,
            "total_tokens": tin + tout + cr + cw,
            "estimated_cost": cost,
            "baseline_cost": 0.0 if not ok else round(_COST["sonnet"] * (1.5 + rng.random()), 6),
            "cached": cached,
            "backend": "simulated",
            "error_type": None if ok else rng.choice(("rate_limit", "overloaded")),
            "attempts": 0 if cached else (3 if not ok else rng.choice((1, 1, 1, 2))),
            "session_id": "test",
            **fixed,
        })
    return rows


def log_path(home: Path) -> Path:
    return Path(home) / "metrics" / "executions.jsonl"


def write_rows(home: Path, rows: list[dict[str, Any]]) -> Path:
    """Append `rows` to the metrics log of `home`; returns the log's path."""
    log = MetricsLog(log_path(home))
    log.append_many(rows)
    return log.path
