"""QA endpoints: the ranked queue, relabels (audited), the export for retraining, the confusion
matrix, and who may call them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspection.api.main import create_app
from tests.fixtures.database import ADMIN, QA, STATION, SettingsFactory
from tests.returns.test_qa import T0, Seeder, seed_queue


@pytest.fixture
def client(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> Iterator[TestClient]:
    """The app on this test's database; QA endpoints read rows, so no models are loaded."""
    settings = make_settings(database_url=database_url, models_dir=tmp_path / "no-models")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def seed(client: TestClient) -> Seeder:
    return Seeder(client.app.state.engine)  # type: ignore[attr-defined]


def test_queue_is_ranked_with_reasons_and_image_links(client: TestClient, seed: Seeder) -> None:
    ids = seed_queue(seed)
    response = client.get("/v1/qa/queue", params={"limit": 3}, headers=QA)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["count"] == 4  # the whole queue, though only 3 are returned
    rows = page["data"]
    assert [r["photo_id"] for r in rows] == [ids["p1"], ids["p3"], ids["p4"]]
    first = rows[0]
    assert first["reasons"] == ["inspector_override"]
    assert (first["model_grade"], first["human_grade"]) == ("resell", "reject")
    assert first["mistakenness"] == pytest.approx(1 - 0.95 * 0.01)
    assert first["image_url"] == f"/v1/photos/{ids['p1']}/image"
    assert first["annotated_url"] == f"/v1/photos/{ids['p1']}/annotated"
    assert first["source"] == "station" and first["return_id"] == ids["r1"]
    assert rows[0]["mistakenness"] >= rows[1]["mistakenness"] >= rows[2]["mistakenness"]


def test_relabel_is_audited_and_exported(client: TestClient, seed: Seeder) -> None:
    ids = seed_queue(seed)
    response = client.post(
        "/v1/qa/labels",
        json={"photo_id": ids["p1"], "grade": "reject", "reason": "hairline crack near the lens"},
        headers=QA,
    )
    assert response.status_code == 201, response.text
    label = response.json()
    assert label["grade"] == "reject" and label["model_grade"] == "resell"
    assert label["labeled_by"] == "qa" and label["photo_id"] == ids["p1"]

    audit = client.get(f"/v1/returns/{ids['r1']}/audit", headers=QA).json()
    assert audit["chain_valid"] is True
    assert audit["events"][-1]["action"] == "qa.relabel"
    assert audit["events"][-1]["after"]["reason"] == "hairline crack near the lens"

    queue = client.get("/v1/qa/queue", headers=QA).json()
    assert ids["p1"] not in [r["photo_id"] for r in queue["data"]]

    exported = client.get("/v1/qa/labels/export", headers=QA)
    assert exported.status_code == 200
    assert [row["photo_id"] for row in exported.json()] == [ids["p6"], ids["p1"]]
    since = (T0 + timedelta(days=1)).isoformat()
    recent = client.get("/v1/qa/labels/export", params={"since": since}, headers=QA).json()
    assert [row["photo_id"] for row in recent] == [ids["p1"]]
    assert set(recent[0]) >= {
        "photo_id",
        "grade",
        "model_grade",
        "reason",
        "labeled_by",
        "created_at",
    }


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"photo_id": 987654, "grade": "reject", "reason": "not there"}, 404, "not_found"),
        ({"photo_id": 2**31, "grade": "reject", "reason": "past INTEGER"}, 422, "invalid_input"),
        ({"photo_id": 1, "grade": "mint", "reason": "no such grade"}, 422, "invalid_input"),
        ({"photo_id": 1, "grade": "reject"}, 422, "invalid_input"),
        ({"photo_id": 1, "grade": "reject", "reason": "ok", "extra": 1}, 422, "invalid_input"),
        ({"photo_id": 1, "grade": "reject", "reason": "nul \u0000 byte"}, 422, "invalid_input"),
    ],
)
def test_bad_relabel_is_a_clear_4xx_and_writes_nothing(
    client: TestClient, seed: Seeder, body: dict, status: int, code: str
) -> None:
    seed_queue(seed)
    response = client.post("/v1/qa/labels", json=body, headers=QA)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    exported = client.get("/v1/qa/labels/export", headers=QA).json()
    assert len(exported) == 1  # only the seeded label


def test_confusion_matrix_endpoint(client: TestClient, seed: Seeder) -> None:
    ids = seed_queue(seed)
    client.post(
        "/v1/qa/labels",
        json={"photo_id": ids["p2"], "grade": "refurbish", "reason": "worn corners"},
        headers=QA,
    )
    everything = client.get("/v1/qa/confusion", headers=QA).json()
    assert everything["labels"] == ["resell", "refurbish", "reject"]
    # The seeded label (human reject, model refurbish), the new one (refurbish vs resell) and
    # r1's inspector override (reject vs the station's resell).
    assert everything["matrix"] == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert everything["count"] == 3
    january = client.get(
        "/v1/qa/confusion",
        params={"since": T0.isoformat(), "until": (T0 + timedelta(days=1)).isoformat()},
        headers=QA,
    ).json()
    assert january["count"] == 2  # the new label was made today, outside that day


def test_qa_endpoints_need_the_qa_role(client: TestClient, seed: Seeder) -> None:
    ids = seed_queue(seed)
    assert client.get("/v1/qa/queue", headers=STATION).status_code == 403
    denied = client.post(
        "/v1/qa/labels",
        json={"photo_id": ids["p1"], "grade": "reject", "reason": "x y z"},
        headers=STATION,
    )
    assert denied.status_code == 403 and denied.json()["error"]["hint"]
    assert client.get("/v1/qa/confusion").status_code == 401
    assert client.get("/v1/qa/queue", headers=ADMIN).status_code == 200
