"""Every class of bad upload, on both photo endpoints: a clear 4xx, never a 5xx, nothing stored.

The corpus (tests/fixtures/images.py) carries the status and error code each bad file must get;
here it is thrown at `POST /v1/grade` and `POST /v1/returns/{id}/photos`, alone and mixed with a
good photo, and the store is compared before and after each rejected request.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.database import STATION, bearer
from tests.fixtures.images import BadUpload, bad_upload_corpus, make_photo_bytes
from tests.hardening.conftest import (
    PHOTO_LIMIT_BYTES,
    OpenReturn,
    StoreSnapshot,
    assert_clear_4xx,
)

CORPUS = bad_upload_corpus(max_bytes=PHOTO_LIMIT_BYTES)
GOOD = make_photo_bytes(width=640, height=480, seed=11)
Files = list[tuple[str, tuple[str, bytes, str | None]]]


def _file(upload: BadUpload) -> tuple[str, tuple[str, bytes, str | None]]:
    return ("files", (upload.filename, upload.data, upload.content_type))


def _good(i: int = 0) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (f"good{i}.jpg", GOOD, "image/jpeg"))


@pytest.mark.parametrize("upload", CORPUS, ids=[u.name for u in CORPUS])
def test_grade_refuses_each_bad_file(hardening_client: TestClient, upload: BadUpload) -> None:
    response = hardening_client.post("/v1/grade", files=[_file(upload)], headers=STATION)
    error = assert_clear_4xx(response, status=upload.status)
    assert error["code"] == upload.code


@pytest.mark.parametrize("upload", CORPUS, ids=[u.name for u in CORPUS])
def test_upload_refuses_each_bad_file_and_stores_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    upload: BadUpload,
) -> None:
    before = snapshot()
    # The bad file after a good one: the good one must not be kept either.
    response = hardening_client.post(
        f"/v1/returns/{open_return_case.id}/photos",
        files=[_good(), _file(upload)],
        data={"source": "customer"},
        headers=bearer(open_return_case.token),
    )
    error = assert_clear_4xx(response, status=upload.status)
    assert error["code"] == upload.code
    assert snapshot() == before


def _no_files() -> Files:
    return []


def _too_many() -> Files:
    return [_good(i) for i in range(11)]


def _wrong_field() -> Files:
    return [("photo", ("good.jpg", GOOD, "image/jpeg"))]


@pytest.mark.parametrize(
    "make_files",
    [_no_files, _too_many, _wrong_field],
    ids=["no_files", "eleven_files", "wrong_field_name"],
)
def test_grade_refuses_wrong_file_counts(
    hardening_client: TestClient, make_files: Callable[[], Files]
) -> None:
    files = make_files()
    # An empty multipart body still has to be multipart: send a harmless form field.
    response = hardening_client.post(
        "/v1/grade", files=files or None, data={"category": "electronics"}, headers=STATION
    )
    assert_clear_4xx(response)


@pytest.mark.parametrize(
    "make_files",
    [_no_files, _too_many, _wrong_field],
    ids=["no_files", "eleven_files", "wrong_field_name"],
)
def test_upload_refuses_wrong_file_counts_and_stores_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    make_files: Callable[[], Files],
) -> None:
    before = snapshot()
    response = hardening_client.post(
        f"/v1/returns/{open_return_case.id}/photos",
        files=make_files() or None,
        data={"source": "customer"},
        headers=bearer(open_return_case.token),
    )
    assert_clear_4xx(response)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("form", "who"),
    [
        ({"source": "robot"}, "customer"),
        ({}, "customer"),
        ({"source": "customer", "return_item_id": "-3"}, "customer"),
        ({"source": "customer", "return_item_id": "first"}, "customer"),
        ({"source": "customer", "return_item_id": str(10**30)}, "customer"),
        ({"source": "customer", "return_item_id": "999999"}, "customer"),
        ({"source": "station"}, "customer"),
        ({"source": "station"}, "station"),  # the return is not at the station yet
        ({"source": "customer\u0000"}, "customer"),
    ],
    ids=[
        "unknown_source",
        "missing_source",
        "negative_item",
        "item_not_a_number",
        "huge_item",
        "item_of_another_return",
        "customer_claims_station",
        "station_too_early",
        "nul_in_source",
    ],
)
def test_upload_refuses_bad_form_fields_and_stores_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    form: dict[str, str],
    who: str,
) -> None:
    headers = bearer(open_return_case.token) if who == "customer" else STATION
    before = snapshot()
    response = hardening_client.post(
        f"/v1/returns/{open_return_case.id}/photos",
        files=[_good()],
        data=form,
        headers=headers,
    )
    assert_clear_4xx(response)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/returns/999999/photos", "customer"),
        ("/v1/returns/0/photos", "station"),
        (f"/v1/returns/{10**30}/photos", "station"),
        ("/v1/returns/abc/photos", "station"),
        ("/v1/returns/{id}/photos", "none"),
        ("/v1/returns/{id}/photos", "bad_token"),
    ],
    ids=["unknown_return", "zero_id", "huge_id", "id_not_a_number", "no_auth", "forged_token"],
)
def test_upload_to_a_wrong_return_or_without_rights_stores_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    path: str,
    headers: str,
) -> None:
    header = {
        "customer": bearer(open_return_case.token),
        "station": STATION,
        "none": {},
        "bad_token": bearer(open_return_case.token[:-4] + "AAAA"),
    }[headers]
    before = snapshot()
    response = hardening_client.post(
        path.format(id=open_return_case.id),
        files=[_good()],
        data={"source": "customer"},
        headers=header,
    )
    assert_clear_4xx(response)
    assert snapshot() == before


def test_grade_refuses_a_json_body_and_an_oversize_category(hardening_client: TestClient) -> None:
    as_json = hardening_client.post("/v1/grade", json={"files": ["x"]}, headers=STATION)
    assert_clear_4xx(as_json)
    long_category = hardening_client.post(
        "/v1/grade", files=[_good()], data={"category": "x" * 100_000}, headers=STATION
    )
    assert_clear_4xx(long_category)


def test_grade_refuses_a_body_over_the_request_limit(hardening_client: TestClient) -> None:
    # Twelve files of 256 kB each: every file is under the photo limit, the body is not.
    big = b"\xff\xd8" + b"\x00" * (PHOTO_LIMIT_BYTES - 10)
    files = [("files", (f"p{i}.jpg", big, "image/jpeg")) for i in range(12)]
    response = hardening_client.post("/v1/grade", files=files, headers=STATION)
    assert_clear_4xx(response, status=413)


def test_a_good_photo_after_the_rejections_is_still_stored(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
) -> None:
    """The rejections above leave the return usable: the same request with good files works."""
    before = snapshot()
    response = hardening_client.post(
        f"/v1/returns/{open_return_case.id}/photos",
        files=[_good()],
        data={"source": "customer"},
        headers=bearer(open_return_case.token),
    )
    assert response.status_code == 201, response.text
    after = snapshot()
    assert after.rows["photos"] == before.rows["photos"] + 1
    assert len(after.blobs) > len(before.blobs)
