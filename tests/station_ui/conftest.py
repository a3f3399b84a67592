"""Fixtures for the UI tests: the real API in uvicorn, seeding through it, and the apps pointed
at it via INSPECTION_UI_API_URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.station_ui.live_api import Seeder, make_api_settings, serve_api

UI_DIR = Path(__file__).resolve().parents[2] / "station_ui"
# Grading runs the ONNX models on every upload: give a script run room on a busy 2-core box.
APP_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[str]:
    """The real inspection API (temp SQLite, temp blobs, test models) on a free port."""
    workdir = tmp_path_factory.mktemp("ui-api")
    with serve_api(make_api_settings(workdir=workdir, models_dir=models_dir)) as url:
        yield url


@pytest.fixture
def seeder(live_api: str) -> Iterator[Seeder]:
    """Creates orders and returns through the live API."""
    seeder = Seeder(live_api)
    yield seeder
    seeder.close()


@pytest.fixture
def ui_env(live_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points the Streamlit apps at the live API (they read settings on every run)."""
    monkeypatch.setenv("INSPECTION_UI_API_URL", live_api)
    monkeypatch.setenv("INSPECTION_UI_STATION_KEY", "demo-station-key")
    monkeypatch.setenv("INSPECTION_UI_QA_KEY", "demo-qa-key")
    return live_api


@pytest.fixture
def new_station_app(ui_env: str) -> Callable[[], AppTest]:
    """Builds a fresh session of the staff app (station, QA, dashboard): one browser tab each."""
    return lambda: AppTest.from_file(
        str(UI_DIR / "station_app.py"), default_timeout=APP_TIMEOUT_SECONDS
    )


@pytest.fixture
def new_portal_app(ui_env: str) -> Callable[[], AppTest]:
    """Builds a fresh session of the customer portal."""
    return lambda: AppTest.from_file(
        str(UI_DIR / "portal_app.py"), default_timeout=APP_TIMEOUT_SECONDS
    )
