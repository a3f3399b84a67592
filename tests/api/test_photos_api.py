"""Photo uploads: a bad file rejects the whole request and stores nothing; station/customer
sources by status; privacy deletion keeps the audit fact but not the image; retention purge."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from inspection.settings import Settings
from inspection.store.models import Inspection, Photo, utcnow
from inspection.store.records import AuditEvent
from tests.fixtures.database import ADMIN, STATION, bearer, create_order, open_return, upload_photos
from tests.fixtures.images import make_photo_bytes


def _photo_rows(client: TestClient) -> tuple[int, int]:
    with Session(client.app.state.engine) as session:  # type: ignore[attr-defined]
        return (
            session.exec(select(func.count()).select_from(Photo)).one(),
            session.exec(select(func.count()).select_from(Inspection)).one(),
        )


def _blob_files(settings: Settings) -> list[Path]:
    root = Path(settings.storage.blob_dir)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_one_bad_file_rejects_the_request_and_stores_nothing(
    api_client: TestClient, settings: Settings
) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    files = [
        ("files", ("good.jpg", make_photo_bytes(seed=1), "image/jpeg")),
        ("files", ("notes.txt", b"this is not a photo at all", "text/plain")),
    ]

    response = api_client.post(
        f"/v1/returns/{ret['id']}/photos",
        files=files,
        data={"source": "customer"},
        headers=bearer(token),
    )

    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in response.text
    assert _photo_rows(api_client) == (0, 0)
    assert _blob_files(settings) == []


def test_oversized_upload_is_413(api_client: TestClient, settings: Settings) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    too_big = b"\xff\xd8" + b"0" * (settings.intake.max_bytes + 10)

    response = upload_photos(
        api_client, ret["id"], [too_big], source="customer", headers=bearer(token)
    )

    assert response.status_code == 413
    assert _photo_rows(api_client) == (0, 0)


def test_upload_needs_files_and_a_known_source(api_client: TestClient) -> None:
    ret, token = open_return(api_client, create_order(api_client))

    no_files = api_client.post(
        f"/v1/returns/{ret['id']}/photos", data={"source": "customer"}, headers=bearer(token)
    )
    bad_source = upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=1)], source="drone", headers=bearer(token)
    )

    assert no_files.status_code == 422
    assert bad_source.status_code == 422
    assert "source" in bad_source.json()["error"]["message"]


def test_photos_accumulate_into_one_item_grade(api_client: TestClient) -> None:
    ret, token = open_return(api_client, create_order(api_client))

    first = upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=1)], source="customer", headers=bearer(token)
    )
    second = upload_photos(
        api_client,
        ret["id"],
        [make_photo_bytes(seed=2, defect="crack")],
        source="customer",
        headers=bearer(token),
    )

    assert first.status_code == 201 and second.status_code == 201
    state = api_client.get(f"/v1/returns/{ret['id']}", headers=bearer(token)).json()
    assert len(state["photos"]) == 2
    assert state["item_grade"]["grade"] == second.json()["item_grade"]["grade"]
    annotated = api_client.get(state["photos"][0]["annotated_url"], headers=STATION)
    assert annotated.status_code == 200 and annotated.content[:4] == b"\x89PNG"


def test_annotated_and_heatmap_are_drawn_on_view_not_stored_at_upload(
    api_client: TestClient, settings: Settings
) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    crack = make_photo_bytes(seed=3, defect="crack")
    photo = upload_photos(
        api_client, ret["id"], [crack], source="customer", headers=bearer(token)
    ).json()["photos"][0]
    # The upload stored the original only: one blob, no annotated key.
    assert len(_blob_files(settings)) == 1
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        assert session.get(Photo, photo["id"]).annotated_blob_key is None  # type: ignore[union-attr]

    first = api_client.get(photo["annotated_url"], headers=bearer(token))
    again = api_client.get(photo["annotated_url"], headers=STATION)
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content == again.content
    drawn = Image.open(io.BytesIO(first.content))
    # drawn on the analysis-size image, same shape as the photo
    assert abs(drawn.width / drawn.height - photo["width"] / photo["height"]) < 0.01
    heat = api_client.get(f"/v1/photos/{photo['id']}/heatmap", headers=STATION)
    assert heat.status_code == 200 and heat.content[:4] == b"\x89PNG"
    assert heat.content != first.content
    # The heatmap is a staff tool; viewing writes nothing.
    assert (
        api_client.get(f"/v1/photos/{photo['id']}/heatmap", headers=bearer(token)).status_code
        == 403
    )
    assert len(_blob_files(settings)) == 1

    api_client.delete(f"/v1/customers/{ret['customer_id']}/photos", headers=ADMIN)
    for path in (photo["annotated_url"], f"/v1/photos/{photo['id']}/heatmap"):
        assert api_client.get(path, headers=STATION).status_code == 404


def test_privacy_delete_erases_images_but_keeps_the_audit_fact(
    api_client: TestClient, settings: Settings
) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    photo = make_photo_bytes(seed=7)
    uploaded = upload_photos(
        api_client, ret["id"], [photo], source="customer", headers=bearer(token)
    )
    photo_id = uploaded.json()["photos"][0]["id"]
    assert _blob_files(settings)

    response = api_client.delete(f"/v1/customers/{ret['customer_id']}/photos", headers=ADMIN)

    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert api_client.get(f"/v1/photos/{photo_id}/image", headers=STATION).status_code == 404
    assert _blob_files(settings) == []
    state = api_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    assert state["photos"][0]["deleted"] is True and state["photos"][0]["image_url"] is None
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        events = session.exec(
            select(AuditEvent).where(
                AuditEvent.return_id == ret["id"], AuditEvent.action == "photos.deleted"
            )
        ).all()
    assert len(events) == 1 and events[0].after["photo_ids"] == [photo_id]  # type: ignore[index]
    again = api_client.delete(f"/v1/customers/{ret['customer_id']}/photos", headers=ADMIN)
    assert again.json() == {"deleted": 0}
    assert api_client.delete("/v1/customers/999999/photos", headers=ADMIN).status_code == 404


def test_shared_blob_survives_deleting_one_customer(
    api_client: TestClient, settings: Settings
) -> None:
    # The same bytes uploaded by two customers are one blob: erasing one keeps the other's.
    photo = make_photo_bytes(seed=9)
    ret_a, token_a = open_return(api_client, create_order(api_client))
    ret_b, token_b = open_return(api_client, create_order(api_client))
    upload_photos(api_client, ret_a["id"], [photo], source="customer", headers=bearer(token_a))
    kept = upload_photos(
        api_client, ret_b["id"], [photo], source="customer", headers=bearer(token_b)
    )

    api_client.delete(f"/v1/customers/{ret_a['customer_id']}/photos", headers=ADMIN)

    image = api_client.get(f"/v1/photos/{kept.json()['photos'][0]['id']}/image", headers=STATION)
    assert image.status_code == 200 and image.content == photo


def test_purge_photos_command_erases_only_expired(
    api_client: TestClient, settings: Settings, monkeypatch: object
) -> None:
    from inspection import cli

    ret, token = open_return(api_client, create_order(api_client))
    upload_photos(
        api_client,
        ret["id"],
        [make_photo_bytes(seed=31), make_photo_bytes(seed=32)],
        source="customer",
        headers=bearer(token),
    )
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        old = session.exec(select(Photo).order_by(col(Photo.id))).first()
        assert old is not None
        old.created_at = utcnow() - timedelta(days=settings.storage.photo_retention_days + 1)
        session.add(old)
        session.commit()
        old_id = old.id
    monkeypatch.setattr(cli, "get_settings", lambda: settings)  # type: ignore[attr-defined]

    result = CliRunner().invoke(cli.app, ["purge-photos"])

    assert result.exit_code == 0, result.output
    assert "purged 1 customer photo" in result.output
    state = api_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    deleted = {p["id"]: p["deleted"] for p in state["photos"]}
    assert deleted[old_id] is True and sum(deleted.values()) == 1


def test_unwritable_photo_store_is_503_and_records_nothing(
    api_client: TestClient, settings: Settings
) -> None:
    import hashlib

    ret, token = open_return(api_client, create_order(api_client))
    photo = make_photo_bytes(seed=91)
    blob_dir = Path(settings.storage.blob_dir)
    blob_dir.mkdir(parents=True, exist_ok=True)
    # A file where the photo's fan-out directory belongs: the write fails as on a broken disk.
    (blob_dir / hashlib.sha256(photo).hexdigest()[:2]).write_bytes(b"")

    response = upload_photos(
        api_client, ret["id"], [photo], source="customer", headers=bearer(token)
    )

    assert response.status_code == 503, response.text
    assert "nothing was recorded" in response.json()["error"]["message"]
    assert _photo_rows(api_client) == (0, 0)


def _graded_photos(source: str) -> float:
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "inspection_photos_graded"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("source") == source
    )


def test_item_grade_covers_earlier_photos_without_regrading_them(api_client: TestClient) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    regraded_before = _graded_photos("regrade")
    customer_before = _graded_photos("customer")
    first = upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=21)], source="customer", headers=bearer(token)
    )
    assert first.status_code == 201, first.text
    first_photo = first.json()["photos"][0]

    second = upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=22)], source="customer", headers=bearer(token)
    )
    assert second.status_code == 201, second.text
    body = second.json()
    second_photo = body["photos"][0]

    # The item grade combines both photos' grades as given at upload (worst case among the
    # photos that passed the quality gate), so it is one of theirs.
    assert body["item_grade"]["grade"] in {first_photo["grade"], second_photo["grade"]}
    # ... and the models did not run again on the first photo.
    assert _graded_photos("regrade") == regraded_before
    assert _graded_photos("customer") == customer_before + 2  # the counter is really read
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        per_photo = session.exec(
            select(Inspection).where(Inspection.return_id == ret["id"], Inspection.scope == "photo")
        ).all()
    # Each photo was graded exactly once: the second upload did not add a grade for the first.
    assert sorted(row.photo_id for row in per_photo) == sorted(
        [first_photo["id"], second_photo["id"]]
    )


def test_photos_per_return_are_capped_per_source(settings: Settings) -> None:
    """One customer token cannot fill the blob store: past the per-return limit the upload is a
    409 that says how many more fit, and nothing of the refused request is kept."""
    from inspection.api.main import create_app
    from inspection.settings import IntakeSettings

    settings.intake = IntakeSettings(max_photos_per_return=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ret, token = open_return(client, create_order(client))
        rid = ret["id"]
        first = upload_photos(
            client, rid, [make_photo_bytes(seed=s) for s in (1, 2)], source="customer",
            headers=bearer(token),
        )  # fmt: skip
        assert first.status_code == 201, first.text
        before = _photo_rows(client)

        over = upload_photos(
            client, rid, [make_photo_bytes(seed=s) for s in (3, 4)], source="customer",
            headers=bearer(token),
        )  # fmt: skip

        assert over.status_code == 409, over.text
        error = over.json()["error"]
        assert error["code"] == "photo_limit_reached"
        assert error["details"] == {"max_photos_per_return": 3, "already": 2, "sent": 2}
        assert "at most 1 more" in error["hint"]
        assert _photo_rows(client) == before
        # the one photo that still fits goes in
        assert (
            upload_photos(
                client, rid, [make_photo_bytes(seed=5)], source="customer", headers=bearer(token)
            ).status_code
            == 201
        )


def test_several_photos_in_one_request_land_in_order_each_with_its_own_grade(
    api_client: TestClient,
) -> None:
    """The answer is built from the rows the upload wrote (not read back): each photo keeps its
    bytes, its place in the request and the grade stored for it."""
    import hashlib

    sent = [make_photo_bytes(seed=11), make_photo_bytes(seed=12, defect="crack")]
    ret, token = open_return(api_client, create_order(api_client))

    response = upload_photos(api_client, ret["id"], sent, source="customer", headers=bearer(token))

    assert response.status_code == 201, response.text
    photos = response.json()["photos"]
    assert [p["sha256"] for p in photos] == [hashlib.sha256(d).hexdigest() for d in sent]
    for photo, data in zip(photos, sent, strict=True):
        assert api_client.get(photo["image_url"], headers=STATION).content == data
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        stored = session.exec(
            select(Inspection.photo_id, Inspection.grade, Inspection.confidence).where(
                Inspection.scope == "photo"
            )
        ).all()
    assert sorted(stored) == sorted((p["id"], p["grade"], p["confidence"]) for p in photos)
    listed = api_client.get(f"/v1/returns/{ret['id']}", headers=bearer(token)).json()["photos"]
    assert [(p["id"], p["grade"]) for p in listed] == [(p["id"], p["grade"]) for p in photos]
