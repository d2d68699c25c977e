"""HTML for results where no widget frontend exists (nbconvert, GitHub, static HTML exports).
Pure string building: no IPython, no ipywidgets."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.results import AgentResult

__all__ = ["result_html"]


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.6f}"


def result_html(r: AgentResult) -> str:
    badge = ('<span style="background:#fde68a;color:#713f12;border-radius:4px;padding:1px 6px;'
             'font-size:11px">simulated</span>') if r.backend == "simulated" else ""
    cached = ('<span style="background:#dbeafe;color:#1e3a8a;border-radius:4px;padding:1px 6px;'
              'font-size:11px">cached</span>') if r.cached else ""
    header = (f"<b>{html.escape(r.agent)}</b> · <code>{html.escape(r.model)}</code>"
              f"{' · ' + html.escape(r.tier) if r.tier else ''} {badge} {cached}")
    if r.success:
        body = f'<div class="cf-answer" style="white-space:pre-wrap">{html.escape(r.text)}</div>'
    else:
        body = (f'<div class="cf-error" style="color:#b91c1c">{html.escape(r.status)}: '
                f"{html.escape(str(r.error_type))} — {html.escape(str(r.error))}</div>")
    saved = r.saved_usd
    footer = (f"{r.input_tokens} in / {r.output_tokens} out tokens"
              + (f" · cache {r.cache_read_tokens} read / {r.cache_write_tokens} written"
                 if r.cache_read_tokens or r.cache_write_tokens else "")
              + f" · {_money(r.cost_usd)}"
              + (f" · saved {_money(saved)} vs baseline" if saved else "")
              + f" · {r.latency_ms:.0f} ms"
              + (f" · TTFT {r.ttft_ms:.0f} ms" if r.ttft_ms is not None else ""))
    return (f'<div class="cf-result" style="border:1px solid #ddd;border-radius:6px;padding:8px">'
            f'<div class="cf-header">{header}</div>{body}'
            f'<div class="cf-footer" style="color:#666;font-size:12px">{footer}</div></div>')
