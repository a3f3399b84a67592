"""POST /v1/grade and POST /v1/admin/reload-models through the whole app with real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspection.grading.types import GRADES
from inspection.settings import IntakeSettings
from tests.fixtures.database import ADMIN, QA, STATION, SettingsFactory
from tests.fixtures.images import BadUpload, make_photo_bytes

CORPUS_MAX_BYTES = 64 * 1024  # the bad-upload corpus' oversize file is just above this


@pytest.fixture(scope="module")
def client(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with the fixture models and a 64 KiB upload limit (so 'oversize' is small)."""
    from inspection.api.main import create_app
    from inspection.settings import DatabaseSettings, Settings, StorageSettings, WebhookSettings

    tmp = tmp_path_factory.mktemp("grade-api")
    settings = Settings()
    settings.database = DatabaseSettings(url=f"sqlite:///{tmp / 'inspection.db'}")
    settings.storage = StorageSettings(blob_dir=tmp / "blobs")
    settings.webhook = WebhookSettings(run_worker=False)
    settings.model = settings.model.model_copy(update={"dir": models_dir})
    settings.intake = IntakeSettings(max_bytes=CORPUS_MAX_BYTES, max_photos_per_request=4)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _files(*photos: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", photo) for photo in photos]


def _small_jpeg(seed: int = 0, **kwargs: object) -> bytes:
    return make_photo_bytes(width=480, height=360, seed=seed, quality=80, **kwargs)  # type: ignore[arg-type]


def test_grades_an_item_from_several_photos(client: TestClient) -> None:
    response = client.post(
        "/v1/grade",
        headers=STATION,
        files=_files(
            ("front.jpg", _small_jpeg(0), "image/jpeg"),
            ("back.jpg", _small_jpeg(1, defect="crack"), "image/jpeg"),
        ),
        data={"category": "electronics"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    item = body["item"]
    assert item["grade"] in GRADES
    assert set(item["probabilities"]) == set(GRADES)
    assert isinstance(item["needs_review"], bool)
    assert item["model_version"] and item["detector_version"]
    assert len(item["photos"]) == 2
    for photo in item["photos"]:
        assert photo["facts"]["format"] == "JPEG"
        assert len(photo["facts"]["sha256"]) == 64 and len(photo["facts"]["phash"]) == 16
        assert "passed" in photo["quality"] and "advice" in photo["quality"]
        assert isinstance(photo["defects"], list)
        assert "embedding" not in photo
    timing = body["timing_ms"]
    assert set(timing) == {"intake", "grade", "total"}
    assert timing["total"] >= timing["grade"] > 0


def test_quality_problems_come_back_as_advice_not_errors(client: TestClient) -> None:
    response = client.post(
        "/v1/grade",
        headers=STATION,
        files=_files(("dark.jpg", _small_jpeg(2, light=0.15), "image/jpeg")),
    )
    assert response.status_code == 200, response.text
    photo = response.json()["item"]["photos"][0]
    assert not photo["quality"]["passed"]
    assert "too_dark" in photo["quality"]["flags"]
    assert any("light" in advice for advice in photo["quality"]["advice"])
    assert "photo_quality" in response.json()["item"]["reason_codes"]


def test_bad_upload_corpus_each_gets_its_4xx(
    client: TestClient, bad_uploads: list[BadUpload]
) -> None:
    for case in bad_uploads:
        response = client.post(
            "/v1/grade",
            headers=STATION,
            files=_files(
                ("good.jpg", _small_jpeg(3), "image/jpeg"),
                (case.filename, case.data, case.content_type or "application/octet-stream"),
            ),
        )
        assert response.status_code == case.status, (case.name, response.text)
        error = response.json()["error"]
        assert error["code"] == case.code, case.name
        assert "photo 2" in error["message"] and case.filename in error["message"], case.name
        assert error.get("hint"), case.name
        assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "no photos"),
        ([("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(5)], "at most 4"),
    ],
)
def test_photo_count_is_checked(client: TestClient, files: list, message: str) -> None:  # type: ignore[type-arg]
    response = client.post(
        "/v1/grade", headers=STATION, files=files or None, data={"category": "shoes"}
    )
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


def test_grading_needs_a_staff_key(client: TestClient) -> None:
    files = _files(("a.jpg", _small_jpeg(4), "image/jpeg"))
    assert client.post("/v1/grade", files=files).status_code == 401
    assert client.post("/v1/grade", files=files, headers={"X-API-Key": "nope"}).status_code == 401
    assert client.post("/v1/grade", files=files, headers=QA).status_code == 200


def test_reload_models_is_admin_only(client: TestClient) -> None:
    assert client.post("/v1/admin/reload-models", headers=STATION).status_code == 403
    response = client.post("/v1/admin/reload-models", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert set(body["model_versions"]) == {"grader", "detector"}
    assert body["providers"]["grader"] == "CPUExecutionProvider"
    # Still grading after the swap.
    files = _files(("a.jpg", _small_jpeg(5), "image/jpeg"))
    assert client.post("/v1/grade", headers=STATION, files=files).status_code == 200


def test_without_models_grading_answers_503_with_a_hint(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    from inspection.api.main import create_app

    settings = make_settings(models_dir=tmp_path / "no-models")
    with TestClient(create_app(settings), raise_server_exceptions=False) as bare:
        response = bare.post(
            "/v1/grade", headers=STATION, files=_files(("a.jpg", _small_jpeg(6), "image/jpeg"))
        )
    assert response.status_code == 503
    assert "INSPECTION_MODEL_DIR" in response.json()["error"]["hint"]


@pytest.mark.parametrize(
    ("fmt", "content_type", "expected"),
    [
        ("PNG", "image/png", "PNG"),
        ("WEBP", "image/webp", "WEBP"),
        ("HEIF", "image/heic", "HEIF"),
        ("JPEG", "application/octet-stream", "JPEG"),
    ],
)
def test_every_accepted_format_grades_over_http(
    client: TestClient, fmt: str, content_type: str, expected: str
) -> None:
    # Small enough for the 64 KiB limit of this module even as a lossless PNG.
    data = make_photo_bytes(fmt=fmt, width=160, height=120, seed=8, quality=60)
    response = client.post(
        "/v1/grade", headers=STATION, files=_files((f"p.{fmt.lower()}", data, content_type))
    )
    assert response.status_code == 200, response.text
    assert response.json()["item"]["photos"][0]["facts"]["format"] == expected


def test_rotated_phone_photo_is_graded_upright(client: TestClient, rotated_jpeg: bytes) -> None:
    response = client.post(
        "/v1/grade", headers=STATION, files=_files(("sideways.jpg", rotated_jpeg, "image/jpeg"))
    )
    assert response.status_code == 200, response.text
    facts = response.json()["item"]["photos"][0]["facts"]
    assert (facts["width"], facts["height"]) == (800, 600)
    assert facts["exif"]["orientation"] == 6
