"""`python -m claudeforce_nb.simulator --port N`: the simulator on 127.0.0.1 for any client."""

from __future__ import annotations

import argparse
import sys

from ..config import get_settings
from ..errors import ClaudeforceError
from .engine import Simulator
from .server import serve


def main(argv: list[str] | None = None) -> int:
    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m claudeforce_nb.simulator", description=__doc__)
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--latency-ms", type=float, default=s.sim_latency_ms, help="fixed latency per call")
    p.add_argument("--speed", type=float, default=s.sim_speed, help="scale of the sampled latency")
    p.add_argument("--faults", default=s.sim_faults, help="e.g. 429:0.1,529:0.05")
    p.add_argument("--seed", type=int, default=s.sim_seed)
    p.add_argument("--rpm", type=int, default=None, help="enforce a requests-per-minute limit")
    args = p.parse_args(argv)
    try:
        sim = Simulator(latency_ms=args.latency_ms, speed=args.speed, faults=args.faults, seed=args.seed,
                        rpm=args.rpm)
    except ClaudeforceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(sim, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
