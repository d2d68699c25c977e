"""The live result view of `%%agent`: a widget that streams the answer as Markdown while it
arrives, then shows tokens, cost, latency, TTFT and savings, with "insert as cell" buttons for
the code blocks; or plain streamed text where there is no Jupyter kernel (terminal IPython).

Saved notebooks stay comparable run to run (nbval): the live widget is displayed with an empty
text form, and when the call ends that display is blanked and the widget is displayed once more
with its final, stable text/plain (summary line + answer) and HTML fallback (no timings). nbval
ignores display updates, Jupyter applies them, and both end up with the same compared outputs.
ipywidgets is imported only when a widget is built.
"""

from __future__ import annotations

import html
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ..render import code_blocks, footer_html, header_html, markdown_html, result_html, result_text

if TYPE_CHECKING:
    from ..core.results import AgentResult

__all__ = ["LiveDisplay", "ResultView", "ResultWidget", "TextResultView", "result_view"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_BOX_STYLE = {"border": "1px solid #ddd", "padding": "4px 8px", "margin": "2px 0"}


class ResultView(Protocol):
    """What the magic drives: streamed text in, then exactly one of finish / cancel / discard."""

    def on_text(self, chunk: str) -> None: ...
    def finish(self, result: AgentResult) -> None: ...
    def cancel(self) -> None: ...
    def discard(self) -> None: ...


def widget_view_data(widget: Any) -> dict[str, Any]:
    """The widget-view part of a widget's mimebundle (its model id), without ipywidgets' text."""
    return {k: v for k, v in widget._repr_mimebundle_().items() if k == WIDGET_MIME}


class LiveDisplay:
    """A widget shown while work is in flight, replaced by its final bundle when done (see the
    module docstring for why a replacement and not an update)."""

    def __init__(self, widget: Any) -> None:
        from IPython.display import display

        self.widget = widget
        self.display_id = uuid.uuid4().hex
        display({**widget_view_data(widget), "text/plain": ""}, raw=True, display_id=self.display_id)

    def close(self, text: str, html: str) -> None:
        from IPython.display import display

        self.discard()
        display({**widget_view_data(self.widget), "text/plain": text, "text/html": html}, raw=True)

    def discard(self) -> None:
        """Blank the live display (the work failed before there was anything to show)."""
        from IPython.display import update_display

        update_display({"text/plain": ""}, raw=True, display_id=self.display_id)


class ResultWidget:
    """One agent call as an ipywidgets VBox: header, answer, code actions, footer."""

    RENDER_INTERVAL_S = 0.05  # re-render the streamed Markdown at most this often

    def __init__(self, agent: str, *, shell: Any = None, model: str | None = None, note: str | None = None,
                 streaming: bool = True, backend: str | None = None) -> None:
        import ipywidgets as w

        self.agent, self.shell, self.model, self.note, self.backend = agent, shell, model, note, backend
        self.state = "waiting"
        self.result: AgentResult | None = None
        self.renders = 0
        self._chunks: list[str] = []
        self._rendered_len = 0
        self._last_render = 0.0
        self.header = w.HTML(header_html(agent, model=model, backend=backend, note=note, state="streaming"))
        waiting = "waiting for the first token…" if streaming else "waiting for the answer…"
        self.answer = w.HTML(f'<div class="cf-answer" style="color:#888">{waiting}</div>')
        self.actions = w.HBox([])
        self.footer = w.HTML("")
        self.box = w.VBox([self.header, self.answer, self.actions, self.footer], layout=w.Layout(**_BOX_STYLE))
        self.box.add_class("cf-result")
        self.buttons: list[Any] = []
        self.live: LiveDisplay | None = None

    def show(self) -> ResultWidget:
        self.live = LiveDisplay(self.box)
        return self

    def _close(self) -> None:
        if self.live is not None:
            self.live.close(self.stable_text(), self.stable_html())
            self.live = None

    def discard(self) -> None:
        if self.live is not None:
            self.live.discard()
            self.live = None

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def on_text(self, chunk: str) -> None:
        """Called for each streamed piece; renders at most every RENDER_INTERVAL_S (the first piece
        at once, so the time to first token is what the user sees)."""
        self._chunks.append(chunk)
        now = time.monotonic()
        if self.state == "waiting" or now - self._last_render >= self.RENDER_INTERVAL_S:
            self.state = "streaming"
            self._render_answer(now)

    def _render_answer(self, now: float | None = None) -> None:
        text = self.text
        self.answer.value = f'<div class="cf-answer">{markdown_html(text)}</div>'
        self._rendered_len = len(text)
        self._last_render = time.monotonic() if now is None else now
        self.renders += 1

    def finish(self, result: AgentResult) -> None:
        self.result = result
        self.state = "done" if result.success else result.status
        self.header.value = header_html(result.agent, model=result.model, tier=result.tier, backend=result.backend,
                                        state=None if result.success else result.status, cached=result.cached,
                                        note=self.note)
        if result.success:
            self._chunks = [result.text]
            self._render_answer()
        else:
            self.answer.value = (f'<div class="cf-error" style="color:#b91c1c">{html.escape(result.status)}: '
                                 f"{html.escape(str(result.error_type))} — {html.escape(str(result.error))}</div>"
                                 + (f"<div>{markdown_html(self.text)}</div>" if self._chunks else ""))
        self.footer.value = footer_html(result)
        self._add_code_buttons(result.text if result.success else "")
        self._close()

    def cancel(self) -> None:
        self.state = "cancelled"
        self.header.value = header_html(self.agent, model=self.model, backend=self.backend, note=self.note,
                                        state="cancelled")
        if self._chunks:
            self._render_answer()
        else:
            self.answer.value = '<div class="cf-answer" style="color:#888">cancelled before the first token</div>'
        self._close()

    def _add_code_buttons(self, text: str) -> None:
        import ipywidgets as w

        blocks = code_blocks(text)
        buttons = []
        for i, block in enumerate(blocks, 1):
            label = f"insert {block.lang or 'code'} as cell" + (f" ({i})" if len(blocks) > 1 else "")
            button = w.Button(description=label, icon="plus", layout=w.Layout(width="auto"),
                              tooltip="Add this code as a new cell (Jupyter inserts it below the next cell you run)")
            button.on_click(lambda _b, code=block.code: self.insert(code))
            buttons.append(button)
        self.buttons = buttons
        self.actions.children = tuple(buttons)

    def insert(self, code: str) -> None:
        from IPython import get_ipython

        shell = self.shell or get_ipython()
        if shell is not None:
            shell.set_next_input(code, replace=False)

    def stable_text(self) -> str:
        if self.result is None:
            return f"{self.agent} · {self.state}"
        return result_text(self.result, self.note)

    def stable_html(self) -> str:
        if self.result is None:
            return header_html(self.agent, model=self.model, backend=self.backend, note=self.note, state=self.state)
        return result_html(self.result, timings=False, note=self.note)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {**widget_view_data(self.box), "text/plain": self.stable_text(), "text/html": self.stable_html()}


class TextResultView:
    """Streams the answer as plain text (terminal IPython, or widgets turned off)."""

    def __init__(self, agent: str, *, note: str | None = None, out: TextIO | None = None) -> None:
        self.agent = agent
        self.out = out or sys.stdout
        self.streamed = False
        if note:
            self.out.write(note + "\n")

    def on_text(self, chunk: str) -> None:
        self.streamed = True
        self.out.write(chunk)
        self.out.flush()

    def finish(self, result: AgentResult) -> None:
        if result.success and not self.streamed:
            self.out.write(result.text)
        elif not result.success:
            self.out.write(("\n" if self.streamed else "") + f"{result.status}: {result.error}")
        timing = f" · {result.latency_ms:,.0f} ms" + (f" · TTFT {result.ttft_ms:,.0f} ms" if result.ttft_ms else "")
        self.out.write(f"\n\n{result.summary_line()}{timing}\n")
        self.out.flush()

    def cancel(self) -> None:
        if self.streamed:
            self.out.write("\n")
            self.out.flush()

    def discard(self) -> None:
        self.cancel()


def result_view(agent: str, *, use_widgets: bool, shell: Any = None, model: str | None = None,
                note: str | None = None, streaming: bool = True, backend: str | None = None) -> ResultView:
    """The view for one call, already on screen (a live widget, or a text stream)."""
    if not use_widgets:
        return TextResultView(agent, note=note)
    return ResultWidget(agent, shell=shell, model=model, note=note, streaming=streaming, backend=backend).show()
