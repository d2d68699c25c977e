"""Model routing: the cheapest Claude tier that can do a task well (`cf.route`).

A model named for the call (`run_agent(model=...)`, decided before the router is asked) wins, then
the agent's `model` pin, then the `default_model` setting; else the task's complexity is estimated
from what it says, not from bare keywords:

- what is asked: a mechanical edit or a short factual question (down), ordinary work such as
  writing, reviewing or debugging (stays), a design, plan, proof, derivation or threat model (up);
- how much: length of the request, number of separate asks, lines of pasted code, the size of
  the system it concerns (thousands of lines, terabytes, thousands of requests a second) and
  attached material to analyse (logs, traces, months of data);
- what is at stake: production data, security, migrations, money, concurrency. Stakes only count
  when the action itself is consequential: "fix the typo in the security section" stays on Haiku.

The features add up to a score in [0, 1] that thresholds map to haiku / sonnet / opus, then the
agent's `min_tier` / `max_tier` clamp it. Every step leaves a reason in plain words. Pure and
deterministic: regular expressions only, well under a millisecond per task.

Speed (route runs on the event loop once per call): each large pattern is searched only when the
text contains one of the literal strings every match of it must contain (worked out from the
pattern itself, see `_Gate`), and recent tasks' features are memoised. Neither changes an answer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ..config import TIERS, Settings, get_settings
from ..definitions import AgentSpec
from ..pricing import tier_of
from .results import Route

try:  # private modules of `re` (3.11+), read only by the literal gates below
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # a Python without them: no gates, every pattern is searched (same answers)
    _sre_c = _sre_parse = None

__all__ = ["HAIKU_BELOW", "OPUS_FROM", "Features", "features", "route", "score_task"]

HAIKU_BELOW = 0.35  # score < this → haiku
OPUS_FROM = 0.60  # score >= this → opus (between: sonnet)
_BASE = 0.45
# Memo of recent tasks (a notebook re-runs a cell, a map job repeats an item): how many, and the
# longest task kept, so a memo of pasted logs cannot grow large.
_MEMO_SIZE = 256
_MEMO_CHARS = 4096


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I | re.X)


_CODE_BLOCK = re.compile(r"```[^\n]*\n?(.*?)(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d[\d.,]*")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+\S", re.M)
_INLINE_NUMBERED = re.compile(r"(?:^|[\s(:;,])(\d{1,2})[.)]\s+[A-Za-z]")

# -- intent ----------------------------------------------------------------------------------------
# A mechanical edit: the verb opens the request (or follows "just"/"please"/"can you").
_EDIT = _rx(r"""^\W*(?:(?:please|just|quickly|can\ you|could\ you)\W+)*
    (?:rename|fix\ the\ (?:typo|spelling|indentation|syntax\ error)|fix\ (?:this\ )?typo|typo\b|correct\ the\ spelling
    |check\ the\ spelling|capitali[sz]e|lower-?case|upper-?case|format|reformat|reword|re-?indent|indent
    |sort\ the\ imports
    |remove|delete|drop|add|insert|append|change|replace|use|swap|bump|update\ the\ version|pin|move
    |convert|turn|translate|make\ (?:the|this|it)\b|put|rotate|set|print|show|extract\ the\ magic|inline
    |skip|mark|shorten|wrap|sort|count|list|vectori[sz]e)\b""")
# Question forms that want a fact, a definition or a one-liner.
_ASK_FACT = _rx(r"""^\W*(?:what|which|who|when|where|why|whats|is|are|does|do|did|can|could|should\ i|will|has|have
    |how\ (?:do|can|to|many|much|long)|difference\ between|anything\ wrong)\b""")
_BRIEF = _rx(r"""\b(?:one[\s-]line(?:r)?|one\ sentence|in\ (?:one|two|a\ few)\ (?:sentences?|lines?|words?)
    |yes\ or\ no|tl;?dr|briefly|quick(?:ly)?|just\ (?:give|tell|the|check|need)|nothing\ else|a\ hint
    |explain\ like\ i'?m|eli5|\bvs\.?\b|\bor\b.+\?$)""")
_ERROR_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")
# Follow-up asks and constraints that turn an edit into real work.
_MORE = _rx(r"""\b(?:and\ (?:explain|why|write|add|show|keep|make\ sure|then|test|document)|keeping\ the
    |making\ sure|without\ changing|behaviou?r|then\ )""")
_DEEP = {
    "proof": (_rx(r"\b(?:prove|proof|derive|derivation|formally\ verify|linearizab\w*|invariants?\ hold)\b"),
              "asks for a proof or derivation", 0.30),
    "architecture": (_rx(r"""\b(?:architect(?:ure)?|architecting|system\ design|information\ architecture
                         |design\ (?:an?|the|our)\ (?:(?!for\b)[\w-]+\ ){0,3}(?:system|platform|infrastructure
                         |pipeline|protocol|harness|strategy|setup|approach|engine|portal|framework)s?)\b"""),
                     "asks for an architecture design", 0.20),
    "threat_model": (_rx(r"\b(?:threat[\s-]model\w*|stride\ analysis|attack\ surface)\b"),
                     "asks for a threat model", 0.25),
    "migration_plan": (_rx(r"\b(?:plan\ (?:a|the|our)\ (?:\S+\ ){0,4}migration|migration\ (?:plan|path|strategy)"
                           r"|(?:zero|no)[\s-]downtime\ (?:migration|cutover)|cutover|strangler"
                           r"|phased\ (?:plan|rollout)"
                           r"|roll\ ?out\ (?:safely|plan))\b"),
                       "asks to plan a migration or rollout", 0.20),
    "root_cause": (_rx(r"\b(?:root[\s-]cause|find\ the\ (?:leak|deadlock|race)|work\ out\ the\ (?:deadlock|cause)|"
                       r"exact\ interleaving|end\ to\ end|systematic\ biases|plausible\ causes)\b"),
                   "asks for a root-cause analysis", 0.15),
    "tradeoffs": (_rx(r"\b(?:trade-?offs?|choose\ between|compare\ (?:two|three|\d)\ (?:designs|options|approaches)"
                      r"|justify\ (?:each|every|the)|rationale\ for|failure\ (?:modes?|scenarios?)|what\ could\ make"
                      r"|state\ (?:every|the|all|your)\ assumptions?|(?:rank|prioriti[sz]e)\ the\ \w+|ranked\ by"
                      r"|prioriti[sz]ed?\ (?:findings|risks|by)|risks?\ stated|the\ risks)\b"),
                  "weighs trade-offs, risks or failure modes", 0.12),
    "causal": (_rx(r"\b(?:causal\w*|causation|confound\w*|incremental\ (?:revenue|effect|lift)|credibly\ attribute"
                   r"|statistically\ sound)\b"),
               "asks for causal or statistical rigour", 0.12),
}
# Operational concerns of a whole system: a request that spans several of them is a system design.
_CONCERNS = _rx(r"""\b(?:monitoring|drift|fail-?over|roll\ ?backs?|rollouts?|roll\ out|disaster[\s-]recovery|rpo|rto
    |backpressure|fault[\s-]toleran\w+|consistency|replication|observability|sl[aos]s?|autoscal\w+|multi-tenant
    |isolation|guarantees?|exactly-once|schema\ evolution|backfills?|cutover|dual\ (?:writes|running)|reconciliation
    |deprecation|versioning|versioned|conflict\ resolution|feature\ store|skew|champion|identity\ resolution|gdpr
    |audit\ logs?|retention|contract\ tests|cross-region|runbooks?|regression\ gating|eval(?:uation)?\ (?:set|harness)
    |graded\ eval|tenant|permissions|cancellation|persistence|delivery\ guarantees|ordering|replay|caching|fallbacks?
    |capacity|throughput|latency|scheduling|sequencing|validation|migration)\b""")
_DESIGN = _rx(r"\b(?:design|plan|strategy|redesign|propose\ a\ (?:plan|split|design))\b")
_WORK = _rx(r"""\b(?:write|implement|build|create|review|refactor|restructure|debug|diagnose|investigate|analy[sz]e
    |optimi[sz]e|profile|explain\ why|why\ does|why\ is|fix\ it|what's\ wrong|compare|audit|check|clean|migrate
    |validate|calibrate|decompose|interpret|convert|package|rewrite|split|test|teach|guide)\b""")

# -- stakes (counted only with a consequential action) --------------------------------------------
_STAKES = {
    "production data": _rx(r"\b(?:production|prod\b|live\ (?:system|database|traffic)|in\ flight|customers?'?\ data"
                           r"|data\ loss|downtime)"),
    "a migration": _rx(r"\bmigrat(?:e|ion|ions|ing)\b"),
    "security": _rx(r"\b(?:security|vulnerab\w+|exploit\w*|authentication|authori[sz]ation|secrets?|mTLS|oauth"
                    r"|impersonat\w+|injection|privilege)\b"),
    "money": _rx(r"\b(?:payments?|billing|ledger|refunds?|invoices?|charges?|double-charges?|balances?|card)\b"),
    "concurrency": _rx(r"\b(?:race\ conditions?|concurren\w+|deadlocks?|lock-free|interleavings?|thread-safe"
                       r"|serializab\w+|exactly-once|distributed|multi-region|partitions?\ under|network\ partitions)"),
}
# -- scale -----------------------------------------------------------------------------------------
_SCALE = [
    _rx(r"\b\d[\d,.]*\s*(?:k|000)\+?[\s-]*(?:lines?|loc|tests?|pages?)\b"),  # 12k lines, 9,000-test
    _rx(r"\b\d[\d,]{3,}[\s-]*(?:lines?|loc|tests?|pages?)\b"),  # 4,000-line
    _rx(r"\b\d[\d.,]*\s*(?:tb|pb|terabytes?)\b"),
    _rx(r"\b\d[\d.,]*\s*(?:k|m|million|billion)?\s*(?:events|writes|requests|transactions|queries|tx)"
        r"\s*(?:/s|per\ second)"
        r"|\b\d[\d.,]*\s*k\s*(?:tps|qps|rps|/s)\b"),
    _rx(r"\b\d{3,}\s*(?:m|million|b|billion)\s+rows\b|\b\d+\s*(?:b|billion)\s+rows\b"),
    _rx(r"\b(?:[2-9]\d|\d{3,})\s+(?:internal\ )?(?:services|microservices|teams|departments|kpis|customers|dags"
        r"|breaking\ changes|downstream)\b"),
    _rx(r"\b\d+\s*(?:gpus?|regions|nodes)\b|\b\d+-gpu\b|multi-region|three\ regions"),
]
_ATTACHED = _rx(r"\b(?:attached|logs?\ from|flame\ graphs?|heap\ snapshots?|py-spy\ dumps|traces|\d+\s+months?\ of"
                r"|\d+\s+years?\ of|incidents)\b")


# -- literal gates ----------------------------------------------------------------------------------
# Under re.IGNORECASE an ASCII letter also matches these characters (checked over every code point in
# tests/test_routing.py); mapping them, and A-Z, to the lower-case letter keeps every case-insensitive
# match of an ASCII literal an exact substring of the folded text.
_FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(65, 91)},
                       "\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _fold(text: str) -> str:
    return text.translate(_FOLD)


def _needs(seq: Any, fold: bool) -> frozenset[str] | None:
    """Strings one of which every match of the parsed pattern `seq` contains, or None if none are
    known. Only ASCII literals count; anything unrecognised gives None (the pattern is then always
    searched), so a gate can be weak but never wrong."""
    best: frozenset[str] | None = None
    run: list[str] = []

    def consider(cand: frozenset[str] | None) -> None:
        nonlocal best
        if cand and (best is None or min(map(len, cand)) > min(map(len, best))):
            best = cand

    def flush() -> None:
        if run:
            consider(frozenset(["".join(run)]))
            run.clear()

    for op, av in seq:
        if op is _sre_c.LITERAL and av < 128:
            run.append(chr(av).lower() if fold else chr(av))
            continue
        flush()
        if op is _sre_c.AT:
            continue  # zero width: the literals either side are still adjacent
        if op is _sre_c.SUBPATTERN and not av[1] and not av[2]:  # no (?i:...)-style local flags
            consider(_needs(av[-1], fold))
        elif op is _sre_c.BRANCH:
            alts = [_needs(alt, fold) for alt in av[1]]
            if all(alts):
                consider(frozenset().union(*alts))  # type: ignore[arg-type]
        elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, _sre_c.POSSESSIVE_REPEAT) and av[0] >= 1:
            consider(_needs(av[2], fold))
    flush()
    return best


class _Gate:
    """A compiled pattern searched only when the text holds one of its required literals."""

    __slots__ = ("rx", "needs", "folded")

    def __init__(self, rx: re.Pattern[str]) -> None:
        self.rx = rx
        self.folded = bool(rx.flags & re.I)
        try:
            needs = _needs(_sre_parse.parse(rx.pattern, rx.flags).data, self.folded)
        except Exception:  # a parser this module does not know: always search
            needs = None
        self.needs = tuple(sorted(needs)) if needs else None

    def open(self, plain: str, folded: str) -> bool:
        if self.needs is None:
            return True
        text = folded if self.folded else plain
        for n in self.needs:  # a plain loop: a generator in any() costs more than most of these checks
            if n in text:
                return True
        return False

    def search(self, plain: str, folded: str) -> bool:
        return self.open(plain, folded) and self.rx.search(plain) is not None


_G_DEEP = {k: _Gate(rx) for k, (rx, _, _) in _DEEP.items()}
_G_STAKES = {k: _Gate(rx) for k, rx in _STAKES.items()}
_G_SCALE = [_Gate(rx) for rx in _SCALE]
_G_BRIEF, _G_ERROR_NAME, _G_MORE = _Gate(_BRIEF), _Gate(_ERROR_NAME), _Gate(_MORE)
_G_CONCERNS, _G_DESIGN, _G_WORK, _G_ATTACHED = _Gate(_CONCERNS), _Gate(_DESIGN), _Gate(_WORK), _Gate(_ATTACHED)


@dataclass(frozen=True)
class Features:
    """What the router saw in a task."""

    words: int
    code_lines: int
    asks: int
    low: str | None  # "edit" | "question" | None
    deep: tuple[str, ...]
    design: bool
    work: bool
    stakes: tuple[str, ...]
    scale: bool
    attached: bool
    concerns: int
    reasons: tuple[str, ...] = field(default=(), compare=False)


def _split_code(task: str) -> tuple[str, int]:
    code_lines = sum(len([ln for ln in m.group(1).splitlines() if ln.strip()]) for m in _CODE_BLOCK.finditer(task))
    prose = _CODE_BLOCK.sub(" ", task)
    return prose, code_lines


_QUOTED = re.compile(r"""'[^'\n]*(?:\s\S+){3,}[^'\n]*'|"[^"\n]*(?:\s\S+){3,}[^"\n]*"|“[^”]*”""")
_CODEISH = re.compile(r"[=()\[\]{}<>]|\b(?:SELECT|FROM|WHERE|UPDATE|INSERT)\b")


def _request(prose: str) -> str:
    """The words of the request itself: without inline code, quoted passages, and material pasted
    after a colon (`rename alias t1 to o in: SELECT ...`)."""
    text = _QUOTED.sub(" quote ", _INLINE_CODE.sub(" code ", prose))
    head, colon, tail = text.partition(":")
    if colon and len(head.split()) <= 15 and _CODEISH.search(tail):
        text = head + " material"
    return text.strip()


def _asks(prose: str) -> int:
    listed = len(_LIST_ITEM.findall(prose))
    numbers = [int(n) for n in _INLINE_NUMBERED.findall(prose)]
    inline = max(numbers) if numbers and numbers[0] == 1 and len(numbers) >= 2 else 0
    questions = prose.count("?")
    return max(listed, inline, 1) + max(0, questions - 1)


def _low(first: str, plain: str, folded: str, n_words: int, code_lines: int, design: bool,
         work: bool) -> str | None:
    """"edit" for a small mechanical change, "question" for a short factual ask, else None."""
    extra = _G_MORE.search(plain, folded)
    if _EDIT.search(first) and (n_words <= 12 or (n_words <= 22 and not extra)):
        return "edit"
    if design or extra:
        return None
    if (_ASK_FACT.search(first) or _G_BRIEF.search(plain, folded)) and n_words <= 18 and code_lines <= 5:
        return "question"
    if _G_ERROR_NAME.search(plain, folded) and n_words <= 20 and code_lines <= 5 and "?" in plain:
        return "question"
    if n_words <= 10 and not work:
        return "question"
    return None


def features(task: str) -> Features:
    """What the router sees in `task` (recent tasks up to _MEMO_CHARS long are memoised; Features
    is immutable)."""
    return _features_memo(task) if len(task) <= _MEMO_CHARS else _features(task)


def _features(task: str) -> Features:
    prose, code_lines = _split_code(task)
    plain = _request(prose)
    folded = _fold(plain)
    n_words = len(_WORD.findall(plain))
    first = plain.split("\n", 1)[0]
    deep = tuple(k for k, g in _G_DEEP.items() if g.search(plain, folded))
    design = _G_DESIGN.search(plain, folded)
    work = _G_WORK.search(plain, folded)
    low = None if deep else _low(first, plain, folded, n_words, code_lines, design, work)
    stakes = tuple(k for k, g in _G_STAKES.items() if g.search(plain, folded)) if low is None else ()
    scale = any(g.search(plain, folded) for g in _G_SCALE)
    attached = _G_ATTACHED.search(plain, folded)
    concerns = (len({m.group(0).lower() for m in _CONCERNS.finditer(plain)})
                if _G_CONCERNS.open(plain, folded) else 0)
    return Features(n_words, code_lines, _asks(prose), low, deep, design, work, stakes, scale, attached, concerns)


_features_memo = functools.lru_cache(maxsize=_MEMO_SIZE)(_features)


def score_task(task: str) -> tuple[float, tuple[str, ...]]:
    """Complexity score in [0, 1] and the reasons behind it."""
    return _score_memo(task) if len(task) <= _MEMO_CHARS else _score_task(task)


def _score_task(task: str) -> tuple[float, tuple[str, ...]]:
    f = _features(task)  # not the features() memo: score_task's own memo already holds repeats
    score = _BASE
    reasons: list[str] = []
    if f.low == "edit":
        score -= 0.25
        reasons.append("short mechanical edit")
    elif f.low == "question":
        score -= 0.25
        reasons.append("short factual question")
    for key in f.deep:
        _, reason, weight = _DEEP[key]
        score += weight
        reasons.append(reason)
    if f.design and not f.deep and f.low is None:
        score += 0.08
        reasons.append("asks for a design or plan")
    if f.concerns >= 3 and f.low is None and (f.design or f.deep):
        score += 0.15 if f.concerns >= 5 else 0.08
        reasons.append(f"spans {f.concerns} operational concerns of a system")
    if f.stakes:
        score += min(0.2, 0.07 * len(f.stakes))
        reasons.append("touches " + _join(f.stakes))
    if f.scale and f.low is None:
        score += 0.12
        reasons.append("concerns a large system or data set")
    if f.attached and f.low is None:
        score += 0.08
        reasons.append("asks to analyse attached material (logs, traces, data)")
    if f.asks >= 3 and f.low is None:
        score += 0.1 if f.asks >= 5 else 0.06
        reasons.append(f"several asks ({f.asks})")
    if f.words > 45 and f.low is None:
        score += 0.1 if f.words > 70 else 0.05
        reasons.append(f"long, detailed request ({f.words} words)")
    if f.code_lines > 40:
        score += 0.05
        reasons.append(f"large code paste ({f.code_lines} lines)")
    if not reasons:
        reasons.append("ordinary task")
    return max(0.0, min(1.0, round(score, 4))), tuple(reasons)


_score_memo = functools.lru_cache(maxsize=_MEMO_SIZE)(_score_task)


def _join(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def tier_for(score: float) -> str:
    return "haiku" if score < HAIKU_BELOW else ("opus" if score >= OPUS_FROM else "sonnet")


def _clamp(tier: str, spec: AgentSpec | None) -> tuple[str, list[str]]:
    reasons: list[str] = []
    if spec is None:
        return tier, reasons
    i = TIERS.index(tier)
    if spec.min_tier and i < TIERS.index(spec.min_tier):
        reasons.append(f"agent {spec.name} asks for at least {spec.min_tier}")
        tier = spec.min_tier
    if spec.max_tier and TIERS.index(tier) > TIERS.index(spec.max_tier):
        reasons.append(f"agent {spec.name} is capped at {spec.max_tier}")
        tier = spec.max_tier
    return tier, reasons


def route(task: str, agent: str | AgentSpec | None = None, *, settings: Settings | None = None) -> Route:
    """The model for `task` (run by `agent`, whose pins apply): Route(model, tier, score, reasons)."""
    from ..definitions import library

    s = settings or get_settings()
    spec = library().agent(agent) if isinstance(agent, str) else agent
    if spec is not None and spec.model:
        return Route(spec.model, tier_of(spec.model) or "sonnet", 1.0,
                     (f"agent {spec.name} is pinned to {spec.model}",))
    if s.default_model:
        return Route(s.default_model, tier_of(s.default_model) or "sonnet", 1.0,
                     (f"setting default_model chooses {s.default_model}",))
    score, reasons = score_task(task if isinstance(task, str) else str(task))
    tier, pins = _clamp(tier_for(score), spec)
    return Route(s.tier_model(tier), tier, score, reasons + tuple(pins))
