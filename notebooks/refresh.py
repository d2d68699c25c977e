"""Re-run the notebooks and save their outputs in place, exactly as `make test` re-runs them with
nbval (see conftest.py): each in a fresh kernel of this Python, a fresh CLAUDEFORCE_HOME, no API
key (the simulator answers) and no simulated latency. Run it after editing a notebook:

    .venv/bin/python notebooks/refresh.py                         # every notebook
    .venv/bin/python notebooks/refresh.py 03-cost-analysis.ipynb  # some of them
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat

from claudeforce_nb.demo import NotebookFailed, execute_notebook

HERE = Path(__file__).resolve().parent
SIM_SPEED = 0.0  # latency is never part of a compared output; no sleeping keeps the runs short


def refresh(path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="claudeforce-nb-") as home:
        run = execute_notebook(path, home, sim_speed=SIM_SPEED)
    nbformat.write(run.notebook, path)
    print(f"{path.name}: {run.cells} cells in {run.seconds:.1f} s")


def main(names: list[str]) -> int:
    paths = [HERE / Path(n).name for n in names] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    for path in paths:
        try:
            refresh(path)
        except NotebookFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
