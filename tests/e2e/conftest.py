"""End-to-end fixtures: a real ``medseg serve`` process and a real headless Chromium driven by Playwright.

One server per module (temporary ``--home``, two users made with ``medseg users add``, the tiny untrained
models of ``tests/server/conftest.py``: a 3D ``ctv_unet3d`` that marks everything as target, in a folder
named ``phantom_ct`` so the page shows its demo banner, and a 2D chromosome U-Net) and one browser.
``new_page()`` gives a test a page in a browser context of its own (own cookies), so signing in or out
never touches another test; test_browser.py's viewer tests share one signed-in page of alice's.

Chromium: Debian's ``/usr/bin/chromium`` (``scripts/install_browser.sh``); Playwright downloads nothing.
Without it the tests FAIL, saying how to install it — unless ``MEDSEG_SKIP_BROWSER_TESTS=1``, then they skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from medseg.data.phantom import make_phantom
from medseg.formats.volume_files import write_dicom_series, write_nifti

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VOLUME_SHAPE = (12, 64, 64)
USERS = ("alice", "bob")
START_TIMEOUT_S = 60.0


def _server_fixtures():
    """tests/server/conftest.py loaded by path (the tests are no package; --import-mode=importlib)."""
    path = REPO / "tests" / "server" / "conftest.py"
    spec = importlib.util.spec_from_file_location("medseg_e2e_server_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SERVER = _server_fixtures()


def _no_browser(message: str):
    if os.environ.get("MEDSEG_SKIP_BROWSER_TESTS") == "1":
        pytest.skip(f"{message} (MEDSEG_SKIP_BROWSER_TESTS=1)")
    pytest.fail(
        f"{message}. Run scripts/install_browser.sh (or set MEDSEG_SKIP_BROWSER_TESTS=1 to skip the browser tests).",
        pytrace=False,
    )


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def medseg_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medseg", *args]


def subprocess_env(home: Path) -> dict:
    """This checkout's medseg first on the path; no terminal colours in the logs."""
    env = dict(os.environ, MEDSEG_HOME=str(home), PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen
    password: str = ""
    models: dict[str, Path] = field(default_factory=dict)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def add_user(home: Path, name: str, password: str) -> None:
    done = subprocess.run(
        medseg_cmd("users", "add", name, "--password-stdin", "--home", str(home)),
        input=password + "\n",
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"medseg users add {name} failed:\n{done.stdout}\n{done.stderr}"


def start_server(home: Path, models: list[Path], log: Path) -> LiveServer:
    """``medseg serve`` on a free port; returns once /api/health answers (fails with the log's tail if not)."""
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--home", str(home), "--device", "cpu"]
    for m in models:
        args += ["--model", str(m)]
    with open(log, "wb") as out:
        process = subprocess.Popen(medseg_cmd(*args), stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(home))
    server = LiveServer(f"http://127.0.0.1:{port}", home, log, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"medseg serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"medseg serve did not answer /api/health within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium_executable() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _no_browser("the Python package playwright is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        _no_browser("Chromium is not installed (no 'chromium' on PATH, no /usr/bin/chromium)")
    return path


@pytest.fixture(scope="module")
def live_server(chromium_executable, tmp_path_factory, constant_model):
    """A real ``medseg serve`` with models ``phantom_ct`` (3D, demo), ``chromo2d`` (2D) and ``metaphase``
    (background / chromosome / overlap, chromosome everywhere: one whole-image instance), users alice, bob."""
    root = tmp_path_factory.mktemp("e2e")
    models = {
        "phantom_ct": _SERVER._save_3d(root / "models" / "phantom_ct", 5.0, 0),
        "chromo2d": _SERVER._save_2d(root / "models" / "chromo2d"),
        "metaphase": constant_model(root / "models" / "metaphase", ["background", "chromosome", "overlap"], 1),
    }
    home = root / "home"
    for name in USERS:
        add_user(home, name, _SERVER.PASSWORD)
    server = start_server(home, list(models.values()), root / "server.log")
    server.models, server.password = models, _SERVER.PASSWORD
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def chromium_browser(chromium_executable, live_server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(chromium_browser, live_server):
    """``new_page()`` → a page in a context of its own (own cookies), closed after the test."""
    contexts = []

    def make(**options):
        context = chromium_browser.new_context(
            base_url=live_server.url, accept_downloads=True, viewport={"width": 1280, "height": 900}, **options
        )
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """A phantom volume as NIfTI and as a zipped DICOM series, a 2D PNG, and a text file named like NIfTI."""
    root = tmp_path_factory.mktemp("e2e-inputs")
    image, _ = make_phantom(VOLUME_SHAPE, seed=5)
    series = write_dicom_series(image, root / "series")
    gradient = np.linspace(0, 255, 40 * 48).reshape(40, 48).astype(np.uint8)  # a 40×48 image
    Image.fromarray(gradient).save(root / "cells.png")
    (root / "scan.nii.gz").write_text("this is not a NIfTI volume\n")
    return {
        "nifti": write_nifti(image, root / "pelvis.nii.gz"),
        "dicom_dir": series,
        "dicom_zip": Path(shutil.make_archive(str(root / "series"), "zip", root, "series")),
        "png": root / "cells.png",
        "bad": root / "scan.nii.gz",
        "shape": VOLUME_SHAPE,
        "n_slices": VOLUME_SHAPE[0],
    }


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("MEDSEG_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
