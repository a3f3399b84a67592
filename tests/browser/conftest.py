"""Fixtures for browser tests: the real API, the real Streamlit apps as `streamlit run`
subprocesses, and Debian's headless Chromium driven by Playwright.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.station_ui.live_api import Seeder, free_port, make_api_settings, serve_api

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
# Streamlit's first start compiles nothing but imports a lot; on a shared 2-core box allow time.
APP_START_SECONDS = 90


@pytest.fixture(scope="module")
def browser_api(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """The real inspection API for the browser test, on a free port."""
    workdir = tmp_path_factory.mktemp("browser-api")
    with serve_api(make_api_settings(workdir=workdir, models_dir=models_dir)) as url:
        yield url


@pytest.fixture
def browser_seeder(browser_api: str) -> Iterator[Seeder]:
    """Seeds orders and returns through the browser test's API."""
    seeder = Seeder(browser_api)
    yield seeder
    seeder.close()


def _streamlit(script: str, api_url: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "INSPECTION_UI_API_URL": api_url,
        "PYTHONPATH": str(REPO),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "station_ui" / script),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Polls Streamlit's health endpoint until it answers (start-up, not a timed assertion)."""
    import time

    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(
        f"streamlit did not start in {APP_START_SECONDS}s: {log.read_text()[-2000:]}"
    )


@pytest.fixture(scope="module")
def station_url(browser_api: str) -> Iterator[str]:
    """`streamlit run station_ui/station_app.py` on a free port, pointed at the API."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield from _streamlit("station_app.py", browser_api, ARTIFACTS / "station-streamlit.log")


@pytest.fixture(scope="module")
def portal_url(browser_api: str) -> Iterator[str]:
    """`streamlit run station_ui/portal_app.py` on a free port, pointed at the API."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield from _streamlit("portal_app.py", browser_api, ARTIFACTS / "portal-streamlit.log")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (no downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
            "`make test` does this where it may)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser tab the size of a station monitor."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(90_000)  # grading on a busy 2-core box can take a while
    try:
        yield tab
    finally:
        context.close()
