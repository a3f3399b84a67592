"""Audit trail and evidence pack through the real API and real models: a return is opened,
photographed, graded and decided; its hash chain, evidence zip and signed webhooks follow."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from inspection.api.routes import audit as audit_routes
from inspection.returns.webhooks import deliver_due
from tests.fixtures.database import (
    ADMIN,
    INTEGRATION,
    QA,
    STATION,
    bearer,
    create_order,
    open_return,
    upload_photos,
)
from tests.returns.test_webhooks import SECRET, Receiver, receiver  # noqa: F401 - fixture


def _submitted_return(client: TestClient, photos: list[bytes]) -> tuple[dict, str]:
    order = create_order(client, price_cents=4999, category="electronics")
    ret, token = open_return(client, order, reason_code="defective")
    uploaded = upload_photos(client, ret["id"], photos, source="customer", headers=bearer(token))
    assert uploaded.status_code == 201, uploaded.text
    submitted = client.post(f"/v1/returns/{ret['id']}/submit", headers=bearer(token))
    assert submitted.status_code == 200, submitted.text
    return submitted.json(), token


def test_audit_evidence_and_webhooks_of_a_real_return(
    api_client: TestClient,
    product_jpeg: bytes,
    cracked_jpeg: bytes,
    receiver: Receiver,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = api_client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["*"], "secret": SECRET},
        headers=INTEGRATION,
    )
    assert hook.status_code == 201, hook.text
    # Electronics need two customer photos under the bundled policy.
    ret, token = _submitted_return(api_client, [product_jpeg, cracked_jpeg])
    return_id = ret["id"]

    response = api_client.get(f"/v1/returns/{return_id}/audit", headers=STATION)
    assert response.status_code == 200, response.text
    audit = response.json()
    assert audit["chain_valid"] is True and audit["broken_at_seq"] is None
    events = audit["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    actions = [e["action"] for e in events]
    assert "status.eligibility_check" in actions and "decision.made" in actions
    assert events[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))

    # Evidence pack: the same chain, the photo file byte for byte, the decision.
    pack = api_client.get(f"/v1/returns/{return_id}/evidence", headers=QA)
    assert pack.status_code == 200, pack.text
    assert pack.headers["content-type"] == "application/zip"
    assert f"evidence-{ret['rma']}.zip" in pack.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(pack.content)) as archive:
        document = json.loads(archive.read("evidence.json"))
        stored = [archive.read(p["files"]["original"]) for p in document["photos"]]
        # annotated images are drawn into the pack from the originals and recorded grades
        drawn = [archive.read(p["files"]["annotated"]) for p in document["photos"]]
    assert stored == [product_jpeg, cracked_jpeg]
    assert all(png.startswith(b"\x89PNG") for png in drawn) and drawn[0] != drawn[1]

    # A pack bigger than the in-memory spool goes through a temporary file, streamed in chunks.
    monkeypatch.setattr(audit_routes, "EVIDENCE_SPOOL_BYTES", 1024)
    monkeypatch.setattr(audit_routes, "EVIDENCE_CHUNK_BYTES", 64 * 1024)
    spooled = api_client.get(f"/v1/returns/{return_id}/evidence", headers=QA)
    assert spooled.status_code == 200, spooled.text
    assert int(spooled.headers["content-length"]) == len(spooled.content) > 64 * 1024
    with zipfile.ZipFile(io.BytesIO(spooled.content)) as archive:
        assert archive.testzip() is None
        again = json.loads(archive.read("evidence.json"))
        assert [archive.read(p["files"]["original"]) for p in again["photos"]] == stored
    assert all(p["files"]["annotated"].endswith(".png") for p in document["photos"])
    photo = document["photos"][0]
    assert photo["sha256"] == hashlib.sha256(product_jpeg).hexdigest()
    assert document["return"]["id"] == return_id
    assert document["order"]["lines"][0]["price_cents"] == 4999
    assert document["decisions"][0]["outcome"] == ret["decision"]["outcome"]
    assert [e["hash"] for e in document["audit"]["events"]] == [e["hash"] for e in events]
    assert any(g["photo_id"] == photo["id"] for g in document["grades"])

    # Outbox -> signed webhooks: every event arrives once, with a valid signature.
    engine = api_client.app.state.engine  # type: ignore[attr-defined]
    settings = api_client.app.state.settings  # type: ignore[attr-defined]
    while deliver_due(engine=engine, settings=settings):
        pass
    assert receiver.bad_signatures == 0
    types = [json.loads(r["body"])["type"] for r in receiver.requests]
    assert "return.eligibility_check" in types and "decision.made" in types
    assert all(n == 1 for n in receiver.processed.values())
    assert len(receiver.processed) == len(receiver.requests)
    delivered = api_client.get(
        "/v1/webhooks/deliveries", params={"status": "delivered"}, headers=ADMIN
    ).json()
    assert delivered["count"] == len(receiver.requests)

    # Customers cannot read the audit trail, not even of their own return.
    assert (
        api_client.get(f"/v1/returns/{return_id}/audit", headers=bearer(token)).status_code == 403
    )
    assert (
        api_client.get(f"/v1/returns/{return_id}/evidence", headers=bearer(token)).status_code
        == 403
    )
    missing = api_client.get("/v1/returns/987654/audit", headers=STATION)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # Someone edits a decision event in the database: the API says where the chain broke.
    target = next(e["seq"] for e in events if e["action"] == "decision.made")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET actor = 'admin' WHERE return_id = :r AND seq = :s"),
            {"r": return_id, "s": target},
        )
    tampered = api_client.get(f"/v1/returns/{return_id}/audit", headers=STATION).json()
    assert tampered["chain_valid"] is False
    assert tampered["broken_at_seq"] == target
