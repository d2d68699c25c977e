"""The benchmark runner's bookkeeping (not the measurements): regression check, tables, baseline merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run as bench


def test_regressions_flag_only_ratios_more_than_15_percent_worse() -> None:
    baseline = {"overhead": {"overhead_ratio": 1.0, "p50_ms": 10.0}, "batch": {"wall_ratio": 2.0}}
    current = {
        "overhead": {"overhead_ratio": 1.16, "p50_ms": 100.0},  # ratio 16% worse; times are not compared
        "batch": {"wall_ratio": 2.3},  # exactly 15% worse: tolerated
        "new": {"thing_ratio": 9.0},  # no baseline yet: not a regression
    }
    worse = bench.regressions(current, baseline)
    assert len(worse) == 1 and worse[0].startswith("overhead.overhead_ratio")
    assert bench.regressions({"overhead": {"overhead_ratio": 0.5}}, baseline) == []  # better is fine


def test_check_exits_1_on_a_regression_and_0_otherwise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    figures = {"fake": {"speed_ratio": 1.0}}
    monkeypatch.setattr(bench, "collect", lambda names, quick: (figures, {}))
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench, "BASELINE", tmp_path / "baseline.json")
    monkeypatch.setattr(bench, "metadata", lambda quick: {"date": "d", "python": "3", "cpu_count": 2,
                                                          "platform": "p", "quick": quick, "commit": None})
    assert bench.main(["--check"]) == 1  # no baseline yet: says so
    assert "--save-baseline" in capsys.readouterr().err

    assert bench.main(["--save-baseline"]) == 0
    saved = json.loads((tmp_path / "baseline.json").read_text())
    assert saved["fake"] == {"speed_ratio": 1.0} and "_meta" in saved
    assert (tmp_path / "results" / "latest.md").read_text().count("| fake | speed_ratio |") == 1

    figures["fake"]["speed_ratio"] = 1.2
    assert bench.main(["--check"]) == 1
    assert "fake.speed_ratio" in capsys.readouterr().err
    figures["fake"]["speed_ratio"] = 1.1
    assert bench.main(["--check"]) == 0


def test_every_module_listed_exists_and_has_run() -> None:
    import importlib

    for name in bench.MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.run), name
