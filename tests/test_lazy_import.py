"""`import claudeforce_nb` and `%load_ext claudeforce_nb` stay cheap: the SDK, pandas, plotly,
ipywidgets and torch are imported on first use, never at load. Checked in fresh interpreters,
since this test process has long imported all of them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("anthropic", "pandas", "plotly", "ipywidgets", "torch")


def loaded_after(code: str) -> list[str]:
    """Which HEAVY modules a fresh interpreter has imported after running `code`."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_imports_nothing_heavy() -> None:
    assert loaded_after("import claudeforce_nb") == []


def test_load_ext_and_config_import_nothing_heavy() -> None:
    assert loaded_after("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "claudeforce_nb")
        assert "agent" in shell.magics_manager.magics["cell"]
        shell.run_line_magic("config", "AgentMagics")
    """) == []


def test_listing_agents_and_workflows_imports_nothing_heavy() -> None:
    assert loaded_after("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "claudeforce_nb")
        shell.run_line_magic("agents", "")
        shell.run_line_magic("workflow", "list")
    """) == []


def test_the_first_agent_cell_imports_the_sdk_and_widgets() -> None:
    # The other half of the contract: first use does load them (so the checks above can fail).
    loaded = loaded_after("""
        import os, tempfile
        os.environ.update(CLAUDEFORCE_HOME=tempfile.mkdtemp(), CLAUDEFORCE_SIM_SPEED="0")
        os.environ.pop("ANTHROPIC_API_KEY", None)
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "claudeforce_nb")
        shell.run_line_magic("config", "AgentMagics.widgets = True")
        shell.run_line_magic("agent", "python-expert --no-cache explain generators")
    """)
    assert {"anthropic", "ipywidgets"} <= set(loaded)
