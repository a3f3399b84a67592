"""`inspection init-db --demo`: migrates, loads the demo orders once, says what it did; and the
CSV import example in datasets/demo parses."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection import cli
from inspection.returns.orders import parse_orders_csv
from inspection.settings import DatabaseSettings, Settings

DEMO = Path(__file__).resolve().parents[2] / "datasets" / "demo"


def test_init_db_demo_is_idempotent(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    settings.database = DatabaseSettings(url=database_url)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    runner = CliRunner()

    first = runner.invoke(cli.app, ["init-db", "--demo"])
    second = runner.invoke(cli.app, ["init-db", "--demo"])

    assert first.exit_code == 0, first.output
    assert "9 created, 0 already present" in first.output
    assert "0 created, 9 already present" in second.output


def test_csv_example_parses() -> None:
    orders = parse_orders_csv(data=(DEMO / "orders-import-example.csv").read_bytes())
    assert [o.order_number for o in orders] == ["CSV-2001", "CSV-2002"]
    assert [len(o.lines) for o in orders] == [2, 1]
    assert orders[1].delivered_at is None and orders[1].expedited_shipping is True
