"""Hardening fixtures: tight limits so oversize cases stay small, and a snapshot of everything
a request could write (rows in every table, files in the blob store)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, func, inspect, select

from inspection.settings import (
    DatabaseSettings,
    IntakeSettings,
    ModelSettings,
    PolicySettings,
    SecuritySettings,
    Settings,
    StorageSettings,
    WebhookSettings,
)
from tests.fixtures.database import POLICY_FILE, _truncate_postgres, create_order, open_return

# Small limits keep the oversize cases to a few hundred kB instead of 15 MB / 160 MB.
PHOTO_LIMIT_BYTES = 256 * 1024
BODY_LIMIT_BYTES = 2 * 1024 * 1024


_REFLECTED: dict[int, MetaData] = {}


@dataclass(frozen=True)
class StoreSnapshot:
    """Row counts per table and the set of blob files at one moment."""

    rows: dict[str, int]
    blobs: frozenset[str]


def take_snapshot(client: TestClient) -> StoreSnapshot:
    """Counts every table's rows and lists the blob store of the app behind `client`."""
    engine = client.app.state.engine  # type: ignore[attr-defined]
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    metadata = _REFLECTED.get(id(engine))
    if metadata is None:
        metadata = MetaData()
        names = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
        metadata.reflect(bind=engine, only=names)
        _REFLECTED[id(engine)] = metadata
    names = sorted(metadata.tables)
    with engine.connect() as conn:
        rows = {
            name: int(
                conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one()
            )
            for name in names
        }
    root = Path(settings.storage.blob_dir)
    blobs = (
        frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        if root.exists()
        else frozenset()
    )
    return StoreSnapshot(rows=rows, blobs=blobs)


def hardening_settings(*, database_url: str, workdir: Path, models_dir: Path) -> Settings:
    """Settings with small photo and body limits, a private blob folder, no webhook worker."""
    settings = Settings()
    settings.database = DatabaseSettings(url=database_url)
    settings.storage = StorageSettings(blob_dir=workdir / "blobs")
    settings.model = ModelSettings(dir=models_dir)
    settings.policy = PolicySettings(path=POLICY_FILE)
    settings.webhook = WebhookSettings(run_worker=False)
    settings.intake = IntakeSettings(max_bytes=PHOTO_LIMIT_BYTES)
    settings.security = SecuritySettings(max_body_bytes=BODY_LIMIT_BYTES)
    return settings


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def hardening_client(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
) -> Iterator[TestClient]:
    """One app per module and backend: hundreds of bad requests need no fresh app each.

    Every test compares snapshots taken around its own request, so sharing the app is safe.
    """
    from inspection.api.main import create_app

    workdir = tmp_path_factory.mktemp("hardening")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'inspection.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        _truncate_postgres(url)
    settings = hardening_settings(database_url=url, workdir=workdir, models_dir=models_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client
    if request.param != "sqlite":
        _truncate_postgres(url)


@pytest.fixture
def snapshot(hardening_client: TestClient) -> Callable[[], StoreSnapshot]:
    """Takes a snapshot of the app's store (call before and after a request)."""
    return lambda: take_snapshot(hardening_client)


@dataclass(frozen=True)
class OpenReturn:
    """A return opened through the API, ready for customer photos."""

    order: dict[str, Any]
    ret: dict[str, Any]
    token: str

    @property
    def id(self) -> int:
        return int(self.ret["id"])


@pytest.fixture
def open_return_case(hardening_client: TestClient) -> OpenReturn:
    """An order with one electronics line and a return opened on it by its customer."""
    order = create_order(hardening_client, price_cents=4999, category="electronics")
    ret, token = open_return(hardening_client, order)
    return OpenReturn(order=order, ret=ret, token=token)


def assert_clear_4xx(response: Any, *, status: int | None = None) -> dict[str, Any]:
    """A 4xx with the error envelope: a code and a message a person can act on."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    body = response.json()
    error = body["error"]
    assert error["code"] and isinstance(error["code"], str)
    assert error["message"] and isinstance(error["message"], str)
    assert "Traceback" not in response.text
    return error
