"""Fixtures of the browser check: a JupyterLab server and headless Chromium, each started once.

Also keeps the check out of the fast suite: plain `pytest` (`make test`) does not collect
tests/e2e, which starts a server and a browser; `make e2e` (`pytest tests/e2e`) names the folder
and so runs it."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    """True when a command-line path points at this folder or inside it."""
    root = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (root / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.parent == HERE and not _asked_for(config):
        return True
    return None


REPO = HERE.parent.parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CLAUDEFORCE_E2E_CHROMIUM", "/usr/bin/chromium")
# Closed network: nothing in the browser may try to reach the outside.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# Each simulated call takes this long (30% to the first token, the rest streamed evenly), long
# enough for the page to show the answer growing before the call completes.
SIM_LATENCY_MS = "3000"


@dataclass(frozen=True)
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the server's root_dir: notebooks written here can be opened
    home: Path  # CLAUDEFORCE_HOME of the kernels
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lab_env(tmp: Path, home: Path) -> dict[str, str]:
    """The server's (and so the kernels') environment: simulator only, everything in `tmp`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDEFORCE_", "ANTHROPIC_", "JUPYTER", "IPYTHON"))}
    env.update({
        "CLAUDEFORCE_HOME": str(home),
        "CLAUDEFORCE_BACKEND": "simulated",
        "CLAUDEFORCE_SIM_LATENCY_MS": SIM_LATENCY_MS,
        "CLAUDEFORCE_SIM_SEED": "1234",
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "PYTHONUNBUFFERED": "1",
    })
    # No news or update checks (closed network) and no toast asking about them in screenshots.
    # Every cell rendered (no virtual scrolling), so off-screen outputs are in the DOM to check.
    settings = {
        "apputils-extension/notification": '{"fetchNews": "false", "checkForUpdates": false}',
        "notebook-extension/tracker": '{"windowingMode": "none"}',
    }
    for name, text in settings.items():
        path = tmp / "lab-settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return env


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 (random free port, random token) with kernels on the simulator."""
    tmp = tmp_path_factory.mktemp("lab")
    root, home = tmp / "root", tmp / "cfhome"
    root.mkdir()
    log = tmp / "jupyterlab.log"
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--allow-root",  # CI runs as root
        # Closed network: no news feed, no update check, no extension manager querying PyPI.
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=_lab_env(tmp, home), stdout=out, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token, root, home, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode} before answering:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 60 s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Kept beside the screenshots: the first place to look when the check fails in CI.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if log.exists():
            (ARTIFACTS / "jupyterlab.log").write_bytes(log.read_bytes())


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (driver only: no browser download), fresh profile."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make e2e` (it installs Debian's chromium with apt-get)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make e2e` (it pip-installs the driver)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000}, device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()
