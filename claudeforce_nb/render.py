"""HTML and plain text for results, agents and workflows: what a notebook shows where no widget
frontend exists (nbconvert, GitHub, terminal IPython), and the pieces the live widgets reuse.

Pure string building: no IPython, no ipywidgets, so the same views render anywhere. Model text is
escaped before any formatting is applied (`markdown_html` is a deliberately small, safe Markdown
subset: nothing the model writes can inject markup). The `*_text` forms are stable (no ids,
timestamps or timings) so notebook checkers such as nbval can compare them run to run.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.results import AgentResult
    from .definitions import AgentSpec, WorkflowSpec

__all__ = [
    "CodeBlock", "Rendered", "agent_card", "agents_table", "code_blocks", "markdown_html", "result_html",
    "result_text", "table_html", "table_text", "workflows_table",
]

_BADGE = "border-radius:4px;padding:1px 6px;font-size:11px;margin-left:4px"
BADGES = {
    "simulated": f"background:#fde68a;color:#713f12;{_BADGE}",
    "cached": f"background:#dbeafe;color:#1e3a8a;{_BADGE}",
    "streaming": f"background:#e0e7ff;color:#3730a3;{_BADGE}",
    "failed": f"background:#fee2e2;color:#991b1b;{_BADGE}",
    "cancelled": f"background:#fef3c7;color:#92400e;{_BADGE}",
}


def badge(label: str, kind: str | None = None) -> str:
    return f'<span class="cf-badge" style="{BADGES.get(kind or label, BADGES["cached"])}">{html.escape(label)}</span>'


@dataclass(frozen=True)
class Rendered:
    """Something to display: the same content as text (stable) and as HTML."""

    text: str
    html: str

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)

    def __repr__(self) -> str:
        return self.text


# --- Markdown ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodeBlock:
    lang: str
    code: str


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE = (
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)"), r'<a href="\2" target="_blank" rel="noopener">\1</a>'),
)
_PRE = ('style="background:#f6f8fa;border-radius:4px;padding:6px 8px;overflow-x:auto;'
        'font-size:12px;line-height:1.4"')


def _segments(text: str) -> list[tuple[str, str, str]]:
    """Split into ("md", "", lines) and ("code", lang, code) parts; an unclosed fence (an answer
    still streaming) runs to the end."""
    parts: list[tuple[str, str, str]] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            parts.append(("md", "", "\n".join(prose)))
            prose = []
        fence, lang, body = m.group(1), m.group(2), []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and set(lines[i].strip()) == {fence[0]}):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        parts.append(("code", lang, "\n".join(body)))
    if prose:
        parts.append(("md", "", "\n".join(prose)))
    return parts


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown answer, in order."""
    return [CodeBlock(lang, code) for kind, lang, code in _segments(text) if kind == "code" and code.strip()]


def _inline(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_emphasis(text[pos:m.start()]))
        out.append(f"<code>{html.escape(m.group(2).strip())}</code>")
        pos = m.end()
    out.append(_emphasis(text[pos:]))
    return "".join(out)


def _emphasis(text: str) -> str:
    escaped = html.escape(text)
    for pattern, repl in _INLINE:
        escaped = pattern.sub(repl, escaped)
    return escaped


def _prose_html(text: str) -> str:
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    quote: list[str] = []

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + f"</{list_tag}>")
            items.clear()
        if quote:
            out.append(f'<blockquote style="color:#555;border-left:3px solid #ddd;margin:4px 0;padding-left:8px">'
                       f"{_inline(' '.join(quote))}</blockquote>")
            quote.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        heading, item = _HEADING.match(stripped), _ITEM.match(line)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)  # notebook outputs read better without giant titles
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif _RULE.match(line):
            flush()
            out.append("<hr>")
        elif stripped.startswith(">"):
            if para or items:
                flush()
            quote.append(stripped.lstrip(">").strip())
        elif item:
            tag = "ol" if item.group(1)[0].isdigit() else "ul"
            if para or quote or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(item.group(2))
        elif items and line[:1].isspace():
            items[-1] += " " + stripped
        else:
            if items or quote:
                flush()
            para.append(stripped)
    flush()
    return "".join(out)


def markdown_html(text: str) -> str:
    """A safe Markdown subset → HTML: headings, paragraphs, lists, quotes, rules, emphasis, inline
    code, http(s) links and fenced code blocks (`<pre><code>`). Everything is escaped first."""
    out: list[str] = []
    for kind, lang, body in _segments(text):
        if kind == "code":
            cls = f' class="language-{html.escape(lang)}"' if lang else ""
            out.append(f"<pre {_PRE}><code{cls}>{html.escape(body)}</code></pre>")
        else:
            out.append(_prose_html(body))
    return "".join(out)


def usd(x: float, precise_below: float = 1.0) -> str:
    """Signed dollars for tables and reports: four decimals under `precise_below`, else two with
    thousands separators ("-$0.0123", "$1,234.50"); "n/a" for NaN."""
    if x != x:
        return "n/a"
    return ("-" if x < 0 else "") + (f"${abs(x):,.4f}" if abs(x) < precise_below else f"${abs(x):,.2f}")


# --- agent results -------------------------------------------------------------------------------

def _money(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.6f}"


def result_text(r: AgentResult, note: str | None = None) -> str:
    """Stable text form: optional note, the summary line, then the answer (or the error)."""
    body = r.text if r.success else f"{r.error or ''}\n\n{r.text}".strip()
    lines = [note] if note else []
    lines.append(r.summary_line())
    return "\n".join(lines) + (f"\n\n{body}" if body else "")


def header_html(agent: str, *, model: str | None = None, tier: str | None = None, backend: str | None = None,
                state: str | None = None, cached: bool = False, note: str | None = None) -> str:
    parts = [f"<b>{html.escape(agent)}</b>"]
    if model:
        parts.append(f"<code>{html.escape(model)}</code>")
    if tier:
        parts.append(html.escape(tier))
    line = " · ".join(parts)
    if backend == "simulated":
        line += badge("simulated")
    if cached:
        line += badge("cached")
    if state in ("streaming", "failed", "cancelled"):
        line += badge(state)
    if note:
        line += f'<div class="cf-note" style="color:#555;font-size:12px">{html.escape(note)}</div>'
    return f'<div class="cf-header">{line}</div>'


def footer_html(r: AgentResult, *, timings: bool = True) -> str:
    parts = [f"{r.input_tokens:,} in / {r.output_tokens:,} out tokens"]
    if r.cache_read_tokens or r.cache_write_tokens:
        parts.append(f"prompt cache {r.cache_read_tokens:,} read / {r.cache_write_tokens:,} written")
    parts.append(_money(r.cost_usd))
    saved = r.saved_usd
    if saved is not None and abs(saved) >= 5e-7:
        base = r.baseline_cost_usd or 0.0
        pct = f" ({saved / base:.0%})" if base > 0 else ""
        parts.append(f"saved {_money(saved)}{pct} vs baseline" if saved > 0 else f"{_money(-saved)} over baseline")
    if timings:
        parts.append(f"{r.latency_ms:,.0f} ms")
        if r.ttft_ms is not None:
            parts.append(f"TTFT {r.ttft_ms:,.0f} ms")
    return f'<div class="cf-footer" style="color:#666;font-size:12px;margin-top:4px">{" · ".join(parts)}</div>'


def answer_html(r: AgentResult) -> str:
    if r.success:
        return f'<div class="cf-answer">{markdown_html(r.text)}</div>'
    partial = f"<div>{markdown_html(r.text)}</div>" if r.text else ""
    return (f'<div class="cf-error" style="color:#b91c1c">{html.escape(r.status)}: '
            f"{html.escape(str(r.error_type))} — {html.escape(str(r.error))}</div>{partial}")


def result_html(r: AgentResult, *, timings: bool = True, note: str | None = None) -> str:
    """The result as one HTML block; `timings=False` leaves out latency and TTFT so the HTML is
    as stable as the text form."""
    state = r.status if not r.success else None
    header = header_html(r.agent, model=r.model, tier=r.tier, backend=r.backend, state=state, cached=r.cached,
                         note=note)
    return (f'<div class="cf-result" style="border:1px solid #ddd;border-radius:6px;padding:8px">'
            f"{header}{answer_html(r)}{footer_html(r, timings=timings)}</div>")


# --- agents and workflows ------------------------------------------------------------------------

def _pin(spec: AgentSpec) -> str:
    if spec.model:
        return spec.model
    bounds = [f">= {spec.min_tier}" if spec.min_tier else "", f"<= {spec.max_tier}" if spec.max_tier else ""]
    return ", ".join(b for b in bounds if b)


def _clip(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_html(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="text-align:left">{html.escape(c)}</td>' for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="cf-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def agents_table(specs: Sequence[AgentSpec]) -> Rendered:
    header = ("name", "description", "skills", "pin")
    rows = [(s.name, s.description, ", ".join(s.skills), _pin(s)) for s in specs]
    return Rendered(table_text(header, [(n, _clip(d), sk, p) for n, d, sk, p in rows]), table_html(header, rows))


def agent_card(spec: AgentSpec) -> Rendered:
    fields = [("name", spec.name), ("description", spec.description), ("domains", ", ".join(spec.domains)),
              ("skills", ", ".join(spec.skills)), ("pin", _pin(spec)),
              ("max_tokens", "" if spec.max_tokens is None else str(spec.max_tokens)),
              ("source", spec.source)]
    shown = [(k, v) for k, v in fields if v]
    text = "\n".join(f"{k}: {v}" for k, v in shown) + f"\n\n{spec.body.strip()}"
    dl = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                 f"{html.escape(v)}</td></tr>" for k, v in shown)
    return Rendered(text, f'<div class="cf-agent"><table>{dl}</table><hr>{markdown_html(spec.body)}</div>')


def workflows_table(specs: Sequence[WorkflowSpec]) -> Rendered:
    header = ("name", "description", "inputs", "steps")
    rows = [(w.name, w.description, ", ".join(w.inputs), str(len(w.steps))) for w in specs]
    return Rendered(table_text(header, [(n, _clip(d), i, k) for n, d, i, k in rows]), table_html(header, rows))
