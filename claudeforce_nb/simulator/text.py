"""Simulated answers and the simulated tokenizer.

The answer is a deterministic function of (model, system, messages, seed): a plausible Markdown
reply shaped by the task — a heading, an approach, a code block when code is asked for, notes —
and a visible line saying it is simulated. Token counts come from one tokenizer used for both
requests and answers, so usage, count_tokens and the text always agree.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re

__all__ = ["count_tokens", "simulated_answer", "split_stream_chunks", "SIMULATED_NOTE"]

_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")
SIMULATED_NOTE = "_Simulated answer from the claudeforce_nb offline simulator; no Claude model was called._"

_CODE_WORDS = re.compile(
    r"\b(write|implement|code|function|class|script|snippet|example|refactor|fix|rewrite|query|"
    r"test|tests|dockerfile|decorator|regex|sql|convert|generate|parse|plot|chart|pipeline|endpoint)\b",
    re.I,
)
_LANGS = [
    (re.compile(r"\b(sql|select|join|query|queries|postgres|sqlite|index(es)?|table)\b", re.I), "sql"),
    (re.compile(r"\b(dockerfile|docker)\b", re.I), "dockerfile"),
    (re.compile(r"\b(github actions|workflow yaml|ci pipeline|kubernetes|k8s|helm|yaml)\b", re.I), "yaml"),
    (re.compile(r"\b(bash|shell|git)\b", re.I), "bash"),
    (re.compile(r"\b(react|typescript|javascript|css|html|jsx|component)\b", re.I), "tsx"),
]
_STOP = {
    "a", "an", "the", "to", "of", "for", "in", "on", "and", "or", "with", "that", "this", "it", "is",
    "be", "my", "me", "please", "can", "you", "how", "what", "why", "do", "i", "we", "our", "into",
    "from", "by", "as", "at", "are", "so", "if", "write", "make", "give", "show", "help",
}


# Each ASCII character as its class for `_TOKEN_RE`: w (\w), a space (\s), p (anything else).
_CLASSES = bytes(
    ord("w") if re.fullmatch(r"\w", chr(c)) else ord(" ") if re.fullmatch(r"\s", chr(c)) else ord("p")
    for c in range(128)
) + b"p" * 128


def count_tokens(text: str) -> int:
    """Tokens in `text`: word pieces of up to four characters plus punctuation."""
    if len(text) > 2000:  # system prompts repeat on every call: counted once, not per request
        return _count_long(text)
    return _count(text)


@functools.lru_cache(maxsize=256)
def _count_long(text: str) -> int:
    return _count(text)


def _count(text: str) -> int:
    """len(_TOKEN_RE.findall(text)), several times faster for ASCII text (a simulated call counts
    its answer and its task on the event loop of a map job): a run of n word characters is
    ceil(n / 4) tokens, every other non-space character one."""
    if not text.isascii():
        return len(_TOKEN_RE.findall(text))
    classes = text.encode("ascii").translate(_CLASSES)
    quads = classes.replace(b"wwww", b"W")  # a run of n: n // 4 W, then n % 4 w
    rests = quads.replace(b"W", b"").replace(b"www", b"w").replace(b"ww", b"w")  # each remainder: one w
    return classes.count(b"p") + quads.count(b"W") + rests.count(b"w")


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]+", text.lower()) if w not in _STOP]


def _title(task: str) -> str:
    first = next((ln.strip() for ln in task.splitlines() if ln.strip()), "your request")
    first = re.sub(r"[`*#>]", "", first)
    if len(first) > 70:
        first = first[:67].rsplit(" ", 1)[0] + "…"
    return first[:1].upper() + first[1:]


def _role(system: str) -> str:
    m = re.search(r"^#\s+(.+)$", system, re.M)
    return m.group(1).strip() if m else "assistant"


def _code(lang: str, words: list[str], rng: random.Random) -> str:
    name = "_".join(words[:3]) or "solution"
    name = re.sub(r"[^a-z0-9_]", "", name)[:40] or "solution"
    if lang == "sql":
        table = words[0] if words else "events"
        return (
            f"SELECT user_id,\n       COUNT(*) AS n_{table},\n       AVG(amount) AS avg_amount\n"
            f"FROM {table}\nWHERE created_at >= DATE '2026-01-01'\nGROUP BY user_id\n"
            "ORDER BY n_" + table + " DESC\nLIMIT 20;"
        )
    if lang == "dockerfile":
        return (
            "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
            "RUN pip install --no-cache-dir -r requirements.txt\nCOPY . .\n"
            'USER 1000\nCMD ["python", "-m", "app"]'
        )
    if lang == "yaml":
        return (
            "name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
            "    steps:\n      - uses: actions/checkout@v4\n      - run: make test"
        )
    if lang == "bash":
        return "git switch -c fix/" + name.replace("_", "-") + "\ngit add -p\ngit commit -m \"Fix " + (
            " ".join(words[:4]) or "the issue") + '"'
    if lang == "tsx":
        comp = "".join(w.capitalize() for w in words[:2]) or "Widget"
        return (
            f"export function {comp}({{ items }}: {{ items: string[] }}) {{\n"
            f"  return (\n    <ul aria-label=\"{comp}\">\n"
            "      {items.map((item) => <li key={item}>{item}</li>)}\n    </ul>\n  );\n}"
        )
    arg = rng.choice(["items", "values", "df", "records", "data"])
    return (
        f"def {name}({arg}):\n"
        f'    """{(" ".join(words[:6]) or "Solve the task").capitalize()}."""\n'
        f"    result = []\n"
        f"    for item in {arg}:\n"
        f"        if item is None:\n"
        f"            continue\n"
        f"        result.append(item)\n"
        f"    return result\n\n\n"
        f"assert {name}([1, None, 2]) == [1, 2]"
    )


_INTROS = [
    "Here is a focused answer from the {role} perspective.",
    "As your {role}, here is how I would approach this.",
    "Short version first, then the details ({role}).",
]
_STEPS = [
    "Restate the goal and the constraints you gave.",
    "Check the inputs and edge cases ({w}).",
    "Apply the simplest approach that is correct for {w}.",
    "Verify the result with a small, runnable check.",
    "Note the trade-offs and what to watch in production.",
    "Measure before optimising; keep the baseline.",
]
_NOTES = [
    "Keep the change small and covered by a test.",
    "Prefer explicit names over clever one-liners.",
    "Watch out for missing values and empty inputs.",
    "Document the assumption about {w} next to the code.",
    "If {w} grows large, revisit the complexity.",
]


def simulated_answer(model: str, system: str, task: str, seed: int | None) -> str:
    digest = hashlib.sha256(f"{seed}\x00{model}\x00{system}\x00{task}".encode()).digest()
    rng = random.Random(digest)
    words = _words(task) or ["task"]
    w = " ".join(words[:2])
    role = _role(system)
    parts = [f"## {_title(task)}", "", rng.choice(_INTROS).format(role=role), "", "### Approach"]
    tier = next((t for t in ("haiku", "sonnet", "opus") if t in model), "")
    n_steps = {"haiku": 3, "sonnet": 4, "opus": 5}.get(tier, 4)  # bigger models answer at more length
    for i, step in enumerate(rng.sample(_STEPS, n_steps), 1):
        parts.append(f"{i}. {step.format(w=w)}")
    wants_code = bool(_CODE_WORDS.search(task)) or "```" in task
    if wants_code:
        lang = next((lang for rx, lang in _LANGS if rx.search(task)), "python")
        parts += ["", "```" + lang, _code(lang, words, rng), "```"]
    parts += ["", "### Notes"]
    for note in rng.sample(_NOTES, 2):
        parts.append(f"- {note.format(w=w)}")
    parts += ["", f"> {SIMULATED_NOTE}"]
    return "\n".join(parts)


def split_stream_chunks(text: str, target: int = 40) -> list[str]:
    """Split text into roughly `target` deltas on whitespace boundaries, as the API streams."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    if not pieces:
        return []
    size = max(1, len(pieces) // target)
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` with at most `max_tokens` tokens."""
    count = 0
    for m in _TOKEN_RE.finditer(text):
        count += 1
        if count > max_tokens:
            return text[: m.start()].rstrip()
    return text
