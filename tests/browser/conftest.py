"""Fixtures for the real-browser tests: a private JupyterLab server and Debian's Chromium.

``lab``: JupyterLab on 127.0.0.1 (free port, no token) serving a temporary root
dir, with its own config, data, runtime, settings and workspace dirs, so nothing
from the user's Jupyter setup (old tabs, kernels, settings) leaks in.  The news
toast (``@jupyterlab/apputils-extension:announcements``) is disabled through a
``labconfig/page_config.json`` in the temporary ``JUPYTER_CONFIG_DIR`` — the same
file ``jupyter labextension disable`` would write, without touching the real one.
The kernel is the venv's: the server runs on ``sys.executable``, and jupyter_client
launches a kernel spec whose argv starts with ``python`` on the server's own
interpreter.

``browser``: a Playwright persistent context on ``/usr/bin/chromium`` with a fresh,
empty user-data dir.  The module is skipped only when that binary is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "build"
READY_TIMEOUT_S = 60.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def page_log(page, name: str) -> str:
    """Lines a page-side watcher pushed to ``window[name]`` (diagnostics for a failed assertion)."""
    try:
        return "\n".join(page.evaluate(f"window.{name} || []"))
    except Exception as exc:  # noqa: BLE001 (diagnostics only)
        return f"(no {name}: {exc})"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read())


def _request(url: str, method: str, timeout: float = 5.0) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout):  # noqa: S310
        pass


@dataclass
class Lab:
    url: str
    root: Path
    runtime_dir: Path
    log_path: Path

    def write_notebook(self, name: str, sources: list[str]) -> Path:
        """Write ``name`` under the server's root: one code cell per source, python3 kernel."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of this server (REST ``DELETE /api/kernels/<id>``)."""
        from concurrent.futures import ThreadPoolExecutor

        urls = [f"{self.url}/api/kernels/{kernel['id']}" for kernel in _get_json(f"{self.url}/api/kernels")]
        with ThreadPoolExecutor(max(len(urls), 1)) as pool:  # each DELETE waits ~1-2 s for a clean exit
            list(pool.map(lambda url: _request(url, "DELETE", timeout=15.0), urls))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _kill_leftover_kernels(runtime_dir: Path) -> None:
    """SIGKILL any process whose command line names a connection file in ``runtime_dir``."""
    marker = str(runtime_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "ipykernel" in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tmp = Path(tempfile.mkdtemp(prefix="executus-lab-"))
    root, config, data, runtime, settings, workspaces, ipython = (
        tmp / d for d in ("root", "config", "data", "runtime", "settings", "workspaces", "ipython")
    )
    for d in (root, config, data, runtime, settings, workspaces, ipython):
        d.mkdir()
    (config / "labconfig").mkdir()
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
            "IPYTHONDIR": str(ipython),
            "JUPYTER_PLATFORM_DIRS": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
    )
    env.pop("JUPYTER_TOKEN", None)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--port-retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.disable_check_xsrf=True",  # lets the fixture DELETE kernels over REST
        f"--LabApp.workspaces_dir={workspaces}",
        f"--LabApp.user_settings_dir={settings}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log_path = tmp / "lab.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    lab = Lab(url=url, root=root, runtime_dir=runtime, log_path=log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{lab.log_tail()}")
            try:
                _get_json(f"{url}/api/status")
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab not ready after {READY_TIMEOUT_S:.0f} s:\n{lab.log_tail()}")
            time.sleep(0.2)
        yield lab
    finally:
        try:  # shut kernels down politely first
            lab.shutdown_kernels()
        except OSError:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        _kill_leftover_kernels(runtime)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Playwright browser context on Debian's Chromium with a new, empty profile."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (`make chromium` installs it)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def build_dir() -> Path:
    BUILD_DIR.mkdir(exist_ok=True)
    return BUILD_DIR
