"""The router (`cf.route`): pins and overrides, every reason it can give, stakes judged in
context, stability, and accuracy floors on the held-out splits of tests/data/routing.jsonl."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import claudeforce_nb as cf
from claudeforce_nb.config import configure
from claudeforce_nb.core.orchestrator import prepare
from claudeforce_nb.core.results import Route
from claudeforce_nb.core.routing import HAIKU_BELOW, OPUS_FROM, score_task
from claudeforce_nb.definitions import library
from claudeforce_nb.errors import UnknownNameError, UsageError

DATA = Path(__file__).parent / "data" / "routing.jsonl"
SELECTION = Path(__file__).parent / "data" / "selection.jsonl"
HELD_OUT = ("holdout", "fresh", "fresh2")

PINNED = """---
name: pinned-helper
description: Answers short questions about lists with a pinned model.
domains: [lists]
skills: []
model: {model}
min_tier: {min_tier}
---
# Pinned helper

You answer briefly.
"""


def labelled(splits: tuple[str, ...] | None = None) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if splits is None or r["split"] in splits]


def user_agent(tmp_path: Path, model: str = "claude-haiku-5-5", min_tier: str = "opus") -> None:
    folder = tmp_path / "my-agents"
    folder.mkdir(exist_ok=True)
    (folder / "pinned-helper.md").write_text(PINNED.format(model=model, min_tier=min_tier), encoding="utf-8")
    configure(agents_dirs=[folder])


# -- every reason path ------------------------------------------------------------------------

REASONS = [
    ("Rename the variable x to count.", "haiku", "short mechanical edit"),
    ("What does zip() do?", "haiku", "short factual question"),
    ("Prove that this merge procedure always terminates and returns a sorted list.", "opus",
     "asks for a proof or derivation"),
    ("Write down the architecture for our notification service.", "opus", "asks for an architecture design"),
    ("Build a threat model for the file upload feature.", "opus", "asks for a threat model"),
    ("Plan the migration of the user table from MySQL to Postgres.", "opus", "asks to plan a migration or rollout"),
    ("Find the root cause of the memory growth in the worker.", "opus", "asks for a root-cause analysis"),
    ("Compare two designs for the job queue and explain the trade-offs.", "sonnet",
     "weighs trade-offs, risks or failure modes"),
    ("Estimate the causal effect of the new onboarding email on retention.", "sonnet",
     "asks for causal or statistical rigour"),
    ("Design the retry logic for our webhook sender.", "sonnet", "asks for a design or plan"),
    ("Design a caching layer with failover, monitoring and replication.", "opus",
     "spans 4 operational concerns of a system"),
    ("Design a system for event ingestion covering monitoring, failover, replication, backpressure and "
     "retention.", "opus", "spans 5 operational concerns of a system"),
    ("Write a script that deletes stale rows from the production database.", "sonnet", "touches production data"),
    ("Write a job that processes 2 TB of click logs every night.", "sonnet", "concerns a large system or data set"),
    ("Summarise the errors in the attached logs from last night's batch run.", "sonnet",
     "asks to analyse attached material (logs, traces, data)"),
    ("Write a parser for the config file.\n1. read the file\n2. validate keys\n3. return a dataclass", "sonnet",
     "several asks (3)"),
    ("Write a class that wraps our HTTP client so that every request is retried with exponential backoff and "
     "jitter, logs the attempt number and the status code, respects the Retry-After header when the server "
     "sends it, and raises a clear error after the last attempt with the URL and the final response body "
     "included in the message.", "sonnet", "long, detailed request (57 words)"),
    ("Review this code:\n```python\n" + "\n".join(f"x{i} = {i}" for i in range(45)) + "\n```", "sonnet",
     "large code paste (45 lines)"),
    ("Write a function that flattens a nested list.", "sonnet", "ordinary task"),
]


@pytest.mark.parametrize(("task", "tier", "reason"), REASONS, ids=[r[2] for r in REASONS])
def test_each_reason_path_is_given_in_plain_words(task: str, tier: str, reason: str) -> None:
    r = cf.route(task)
    assert reason in r.reasons
    assert r.tier == tier and r.model == f"claude-{tier}-5-5"
    score, reasons = score_task(task)
    assert r.score == score and r.reasons == reasons  # no agent, no setting: the score decides alone
    assert (score < HAIKU_BELOW) == (tier == "haiku") and (score >= OPUS_FROM) == (tier == "opus")


def test_several_stakes_are_named_together_and_raise_the_score_more() -> None:
    one = cf.route("Write a script that deletes stale rows from the production database.")
    two = cf.route("Write a script that refunds duplicate payments in the production database.")
    assert "touches production data and money" in two.reasons
    assert two.score > one.score


def test_a_two_concern_design_is_not_called_a_system() -> None:
    r = cf.route("Design a queue wrapper with failover and monitoring.")
    assert not any(reason.startswith("spans") for reason in r.reasons)


def test_trivial_router_sends_unused_import_removal_and_dropdown_to_haiku_not_opus() -> None:
    # the two examples the original keyword router sent to the most expensive model
    assert cf.route("Remove unused import").tier == "haiku"
    assert cf.route("Add a dropdown menu").tier == "haiku"


# -- stakes only count in context -------------------------------------------------------------

def test_stakes_words_in_a_trivial_edit_stay_on_haiku() -> None:
    r = cf.route("Fix the typo in the security section of the README.")
    assert r.tier == "haiku"
    assert not any(reason.startswith("touches") for reason in r.reasons)


def test_a_stakes_word_inside_another_word_is_not_a_stake() -> None:
    r = cf.route("Write a function that returns the product of a list of prices.")
    assert not any(reason.startswith("touches") for reason in r.reasons)
    assert "production" not in " ".join(r.reasons)


def test_code_pasted_after_a_colon_does_not_count_as_the_request() -> None:
    r = cf.route("rename alias t1 to o in: SELECT t1.id, t1.total FROM orders t1 WHERE t1.total > 100 "
                 "AND t1.region = 'EU' ORDER BY t1.total DESC")
    assert r.tier == "haiku" and "short mechanical edit" in r.reasons


# -- pins and overrides -----------------------------------------------------------------------

def test_agent_min_tier_lifts_a_trivial_task_and_says_why() -> None:
    r = cf.route("Rename the variable x to count.", "security-auditor")
    assert r.tier == "sonnet" and r.model == "claude-sonnet-5-5"
    assert r.reasons == ("short mechanical edit", "agent security-auditor asks for at least sonnet")


def test_agent_max_tier_caps_a_design_task_and_says_why() -> None:
    r = cf.route("Write down the architecture for our notification service.", "teaching-assistant")
    assert r.tier == "sonnet"
    assert r.reasons[-1] == "agent teaching-assistant is capped at sonnet"
    assert cf.route("Write down the architecture for our notification service.").tier == "opus"


def test_min_tier_leaves_a_task_already_above_it_alone() -> None:
    r = cf.route("Build a threat model for the file upload feature.", "security-auditor")
    assert r.tier == "opus" and not any("at least" in reason for reason in r.reasons)


def test_agent_model_pin_wins_over_the_score_and_its_own_min_tier(tmp_path: Path) -> None:
    user_agent(tmp_path, model="claude-haiku-5-5", min_tier="opus")
    r = cf.route("Prove that this merge procedure always terminates and returns a sorted list.", "pinned-helper")
    assert (r.model, r.tier, r.score) == ("claude-haiku-5-5", "haiku", 1.0)
    assert r.reasons == ("agent pinned-helper is pinned to claude-haiku-5-5",)


def test_agent_spec_object_is_accepted_like_its_name() -> None:
    spec = library().agent("security-auditor")
    assert cf.route("Rename the variable x to count.", spec) == cf.route("Rename the variable x to count.",
                                                                         "security-auditor")


def test_default_model_setting_overrides_the_router() -> None:
    configure(default_model="claude-opus-5-5")
    r = cf.route("Rename the variable x to count.")
    assert (r.model, r.tier) == ("claude-opus-5-5", "opus")
    assert r.reasons == ("setting default_model chooses claude-opus-5-5",)


def test_agent_pin_still_wins_over_the_default_model_setting(tmp_path: Path) -> None:
    user_agent(tmp_path, model="claude-haiku-5-5")
    configure(default_model="claude-opus-5-5")
    assert cf.route("Rename x.", "pinned-helper").model == "claude-haiku-5-5"


def test_explicit_model_wins_over_agent_pin_setting_and_router(tmp_path: Path) -> None:
    user_agent(tmp_path, model="claude-haiku-5-5")
    configure(default_model="claude-sonnet-5-5")
    call = prepare("pinned-helper", "Rename x.", model="opus", cache=False)
    assert call.route.model == call.params["model"] == "claude-opus-5-5"
    assert call.route.reasons == ("model claude-opus-5-5 was asked for explicitly",)


def test_routed_call_sends_the_routed_model(tmp_path: Path) -> None:
    call = prepare("python-expert", "Rename the variable x to count.", cache=False)
    assert call.params["model"] == "claude-haiku-5-5" and call.route.tier == "haiku"


def test_tier_models_are_configurable() -> None:
    configure(opus_model="claude-opus-4-6", haiku_model="claude-haiku-4-5")
    assert cf.route("Build a threat model for the file upload feature.").model == "claude-opus-4-6"
    assert cf.route("Rename the variable x to count.").model == "claude-haiku-4-5"


def test_unknown_agent_is_a_one_line_usage_error_with_a_suggestion() -> None:
    with pytest.raises(UnknownNameError) as info:
        cf.route("Rename x.", "pyton-expert")
    assert isinstance(info.value, UsageError)
    assert "python-expert" in str(info.value) and "\n" not in str(info.value)


# -- stability ----------------------------------------------------------------------------------

def test_same_task_gets_the_same_route_every_time() -> None:
    for row in labelled():
        agent = row.get("agent")
        first = cf.route(row["task"], agent)
        assert cf.route(row["task"], agent) == first


def test_routes_do_not_depend_on_the_process_or_hash_seed() -> None:
    def described(r: Route) -> list[object]:
        return [r.model, r.tier, r.score, list(r.reasons)]

    here = [described(cf.route(row["task"], row["agent"])) for row in labelled()]
    script = (
        "import json, claudeforce_nb as cf\n"
        f"rows = [json.loads(l) for l in open({str(DATA)!r}, encoding='utf-8') if l.strip()]\n"
        "routes = [cf.route(r['task'], r['agent']) for r in rows]\n"
        "print(json.dumps([[r.model, r.tier, r.score, list(r.reasons)] for r in routes]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         timeout=120)
    assert json.loads(out.stdout) == here


def test_routes_without_the_private_re_parser() -> None:
    # the literal gates read `re._parser` / `re._constants` (private); a Python without them must
    # still import the router and route every task the same, searching every pattern
    here = [[r.model, r.tier, r.score, list(r.reasons)] for r in (cf.route(x["task"], x["agent"]) for x in labelled())]
    script = (
        "import builtins, json\n"
        "real = builtins.__import__\n"
        "def imp(name, g=None, l=None, fromlist=(), level=0):\n"
        "    if name == 're' and fromlist and {'_parser', '_constants'} & set(fromlist):\n"
        "        raise ImportError('simulated: no re._parser')\n"
        "    return real(name, g, l, fromlist, level)\n"
        "builtins.__import__ = imp\n"
        "import claudeforce_nb as cf\n"
        "from claudeforce_nb.core import routing\n"
        "assert all(g.needs is None for g in [*routing._G_DEEP.values(), routing._G_MORE, routing._G_WORK])\n"
        f"rows = [json.loads(l) for l in open({str(DATA)!r}, encoding='utf-8') if l.strip()]\n"
        "routes = [cf.route(r['task'], r['agent']) for r in rows]\n"
        "print(json.dumps([[r.model, r.tier, r.score, list(r.reasons)] for r in routes]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == here


# -- the speed-ups change no answer -------------------------------------------------------------

def _gates() -> list[tuple[str, Any]]:
    from claudeforce_nb.core import routing

    named = [(f"deep {k}", g) for k, g in routing._G_DEEP.items()]
    named += [(f"stakes {k}", g) for k, g in routing._G_STAKES.items()]
    named += [(f"scale {i}", g) for i, g in enumerate(routing._G_SCALE)]
    named += [(n, getattr(routing, f"_G_{n}")) for n in ("BRIEF", "ERROR_NAME", "MORE", "CONCERNS", "DESIGN",
                                                           "WORK", "ATTACHED")]
    return named


def test_case_folding_covers_every_character_ignorecase_matches_to_an_ascii_letter() -> None:
    from claudeforce_nb.core.routing import _fold

    letter = re.compile("[a-z]", re.I)
    for cp in range(0x110000):
        ch = chr(cp)
        if letter.fullmatch(ch):
            folded = _fold(ch)
            assert re.fullmatch(folded, ch, re.I) and folded.isascii() and folded.islower(), hex(cp)


def test_every_pattern_has_a_literal_gate_and_the_gate_never_hides_a_match() -> None:
    from claudeforce_nb.core.routing import _fold

    gates = _gates()
    assert all(g.needs for _, g in gates), [n for n, g in gates if not g.needs]
    texts = [row["task"] for row in labelled()]
    texts += [json.loads(line)["task"] for line in SELECTION.read_text(encoding="utf-8").splitlines() if line.strip()]
    odd = str.maketrans({"i": "\u0131", "I": "\u0130", "s": "\u017f", "k": "\u212a"})
    texts += [t.upper() for t in texts] + [t.translate(odd) for t in texts]
    for text in texts:
        folded = _fold(text)
        for name, g in gates:
            assert g.search(text, folded) == bool(g.rx.search(text)), (name, text)


def test_long_patterns_are_skipped_for_a_plain_task() -> None:
    from claudeforce_nb.core.routing import _fold

    text = "map: explain what item 7 of the list means for the report"
    opened = [n for n, g in _gates() if g.open(text, _fold(text))]
    assert len(opened) <= 4, opened


def test_memoised_features_are_the_same_object_and_long_tasks_are_not_kept() -> None:
    from claudeforce_nb.core import routing

    short = "Rename the variable x to count."
    assert routing.features(short) is routing.features(short)
    long_task = "Review this log:\n" + "line of output\n" * 400
    assert len(long_task) > routing._MEMO_CHARS
    before = routing._features_memo.cache_info().currsize
    assert routing.features(long_task) == routing.features(long_task)
    assert score_task(long_task) == score_task(long_task)
    assert routing._features_memo.cache_info().currsize == before


# -- accuracy floors (regression guards, a little below the measured figures) ----------------

def test_router_accuracy_on_the_held_out_splits_stays_above_the_floor() -> None:
    result = cf.evaluate_router(labelled(HELD_OUT))
    assert result.n == len(labelled(HELD_OUT)) >= 150
    assert result.accuracy >= 0.93, result.mistakes
    assert result.haiku_opus_swaps == 0, result.mistakes


@pytest.mark.parametrize("split", HELD_OUT)
def test_router_accuracy_on_each_held_out_split_stays_above_the_floor(split: str) -> None:
    result = cf.evaluate_router(labelled((split,)))
    assert result.accuracy >= 0.9, result.mistakes
    assert result.haiku_opus_swaps == 0


def test_labelled_set_covers_every_agent_and_tier() -> None:
    rows = labelled()
    assert len(rows) >= 150
    assert {r["agent"] for r in rows} == {a.name for a in cf.agents()}
    assert {r["tier"] for r in rows} == {"haiku", "sonnet", "opus"}
