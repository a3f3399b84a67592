"""Evidence pack: evidence.json with everything recorded about a return, plus its photo files."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from inspection.errors import NotFound
from inspection.returns.audit import record_event
from inspection.returns.evidence import EVIDENCE_FORMAT, EvidencePack, write_evidence
from inspection.store.blobs import BlobStore
from tests.returns.test_qa import T0, Seeder, probs


def _unzip(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("evidence.json")), files


def _write(engine: Engine, blobs: BlobStore, return_id: int) -> tuple[EvidencePack, bytes]:
    out = io.BytesIO()
    with Session(engine) as session:
        pack = write_evidence(
            session=session, return_id=return_id, blobs=blobs, generated_by="qa", out=out
        )
    return pack, out.getvalue()


def _seed_case(
    engine: Engine, blobs: BlobStore, jpeg: bytes, other_jpeg: bytes
) -> tuple[int, int, int]:
    seed = Seeder(engine)
    return_id, item_id = seed.return_(sku="PHONE-X", price_cents=4999, status="refunded")
    kept = seed.photo(
        return_id=return_id,
        item_id=item_id,
        source="customer",
        grade="refurbish",
        probabilities=probs(0.2, 0.7, 0.1),
        defects=["scratch"],
        blob_key=blobs.put(jpeg),
        content=jpeg,
    )
    gone_key = blobs.put(other_jpeg)
    gone = seed.photo(
        return_id=return_id,
        item_id=item_id,
        source="station",
        grade="refurbish",
        probabilities=probs(0.1, 0.8, 0.1),
        blob_key=gone_key,
        content=other_jpeg,
    )
    blobs.delete(gone_key)  # e.g. a privacy deletion: the pack must say so, not fail
    seed.decision(return_id=return_id, outcome="approve", fraud_score=0.12, reason_codes=["ok"])
    seed.refund(return_id=return_id, amount_cents=3999, paid_at=T0 + timedelta(days=2))
    with Session(engine) as session:
        for action in ("status.eligibility_check", "decision.made", "status.approved"):
            record_event(
                session=session,
                return_id=return_id,
                actor="system",
                action=action,
                before=None,
                after={"step": action},
                model_version="grader-test",
                confidence=0.7,
            )
        session.commit()
    return return_id, kept, gone


def test_evidence_zip_holds_the_record_and_photo_files(
    engine: Engine, tmp_path: Path, product_jpeg: bytes, cracked_jpeg: bytes
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    return_id, kept, gone = _seed_case(engine, blobs, product_jpeg, cracked_jpeg)
    pack, data = _write(engine, blobs, return_id)
    document, files = _unzip(data)
    assert document == json.loads(json.dumps(pack.document))

    assert document["format"] == EVIDENCE_FORMAT and document["generated_by"] == "qa"
    assert document["return"]["id"] == return_id
    assert document["return"]["rma"] == f"RMA-{return_id:06d}"
    assert pack.filename == f"evidence-RMA-{return_id:06d}.zip"
    assert document["order"]["lines"][0]["sku"] == "PHONE-X"
    assert document["order"]["lines"][0]["price_cents"] == 4999
    assert document["order"]["customer"]["external_id"].startswith("c-")
    assert document["items"][0]["reason_code"] == "defective"
    assert [d["outcome"] for d in document["decisions"]] == ["approve"]
    assert [r["amount_cents"] for r in document["refunds"]] == [3999]
    assert {g["photo_id"] for g in document["grades"]} == {kept, gone}

    photos = {p["id"]: p for p in document["photos"]}
    assert "embedding" not in photos[kept]
    original = photos[kept]["files"]["original"]
    assert original == f"photos/{kept}-customer-original.jpg"
    assert files[original] == product_jpeg
    assert photos[kept]["sha256"] == hashlib.sha256(product_jpeg).hexdigest()
    assert photos[gone]["files"]["original"] is None  # deleted blob: recorded as missing
    assert set(files) == {original}
    assert document["files"] == [
        {
            "path": original,
            "sha256": hashlib.sha256(product_jpeg).hexdigest(),
            "bytes": len(product_jpeg),
        }
    ]

    audit = document["audit"]
    assert audit["chain_valid"] is True and audit["broken_at_seq"] is None
    assert [e["seq"] for e in audit["events"]] == [1, 2, 3]
    assert audit["events"][1]["action"] == "decision.made"
    assert audit["events"][1]["prev_hash"] == audit["events"][0]["hash"]


def test_evidence_reports_a_tampered_chain(
    engine: Engine, tmp_path: Path, product_jpeg: bytes, cracked_jpeg: bytes
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    return_id, _, _ = _seed_case(engine, blobs, product_jpeg, cracked_jpeg)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2"))
    pack, _ = _write(engine, blobs, return_id)
    assert pack.document["audit"]["chain_valid"] is False
    assert pack.document["audit"]["broken_at_seq"] == 2


def test_evidence_for_unknown_return_is_not_found(engine: Engine, tmp_path: Path) -> None:
    out = io.BytesIO()
    with Session(engine) as session, pytest.raises(NotFound):
        write_evidence(
            session=session,
            return_id=424242,
            blobs=BlobStore(tmp_path),
            generated_by="qa",
            out=out,
        )
    assert out.getvalue() == b""  # refused before anything was written
