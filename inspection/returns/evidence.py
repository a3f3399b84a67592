"""Evidence pack of one return for chargeback disputes: a zip with `evidence.json` (the return,
order, photos' facts, grades, decisions, refunds, the audit chain and its verification) and the
photo files, each listed with its SHA-256 so the pack itself can be checked.

The zip is written to a file as it is built, one photo in memory at a time: a return with 80
photos is a few hundred MB, which held in memory (bytes, zip buffer, response copy) was enough
to exhaust a small station server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlmodel import Session, SQLModel, col, select

from inspection.errors import InspectionError, NotFound
from inspection.returns.audit import verify_chain
from inspection.returns.photos import rendered_image
from inspection.store.blobs import BlobStore
from inspection.store.models import (
    Customer,
    DecisionRecord,
    Inspection,
    Order,
    OrderLine,
    Photo,
    Refund,
    Return,
    ReturnItem,
    ShippingLabel,
    utcnow,
)

log = logging.getLogger(__name__)

EVIDENCE_FORMAT = "returns-inspection-evidence/1"
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/tiff": "tiff",
    "image/bmp": "bmp",
}


@dataclass(frozen=True)
class EvidencePack:
    """What was written: the evidence document and the zip's file name for the download."""

    document: dict[str, Any]
    filename: str


def _dump(row: SQLModel, *, exclude: set[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = row.model_dump(mode="json", exclude=exclude or set())
    return data


def write_evidence(
    *,
    session: Session,
    return_id: int,
    blobs: BlobStore,
    generated_by: str,
    out: IO[bytes],
    pipeline: Any | None = None,
) -> EvidencePack:
    """Writes everything recorded about a return, and its photo files, as a zip to `out`.

    Photo files come first, each stored as it is read; `evidence.json` (which lists every
    file with its SHA-256) is written last. With the grading `pipeline`, each photo's
    annotated image (boxes and grade as recorded) is drawn into the pack too; without it the
    pack holds the originals only. Raises NotFound before writing anything.
    """
    ret = session.get(Return, return_id)
    if ret is None:
        raise NotFound(f"no return {return_id}", hint="check the return id or search by RMA")
    order = session.get(Order, ret.order_id)
    customer = session.get(Customer, ret.customer_id)
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == ret.order_id).order_by(col(OrderLine.id))
    ).all()
    items = session.exec(
        select(ReturnItem).where(ReturnItem.return_id == return_id).order_by(col(ReturnItem.id))
    ).all()
    photos = session.exec(
        select(Photo).where(Photo.return_id == return_id).order_by(col(Photo.id))
    ).all()
    grades = session.exec(
        select(Inspection).where(Inspection.return_id == return_id).order_by(col(Inspection.id))
    ).all()
    decisions = session.exec(
        select(DecisionRecord)
        .where(DecisionRecord.return_id == return_id)
        .order_by(col(DecisionRecord.id))
    ).all()
    refunds = session.exec(
        select(Refund).where(Refund.return_id == return_id).order_by(col(Refund.id))
    ).all()
    label = session.exec(select(ShippingLabel).where(ShippingLabel.return_id == return_id)).first()
    chain = verify_chain(session=session, return_id=return_id)

    with zipfile.ZipFile(out, "w") as archive:
        photo_docs, manifest = _write_photo_files(
            archive=archive, session=session, photos=photos, blobs=blobs, pipeline=pipeline
        )
        document: dict[str, Any] = {
            "format": EVIDENCE_FORMAT,
            "generated_at": _iso(utcnow()),
            "generated_by": generated_by,
            "return": _dump(ret),
            "order": {
                **(_dump(order) if order else {}),
                "customer": _dump(customer) if customer else None,
                "lines": [_dump(line) for line in lines],
            },
            "items": [_dump(item) for item in items],
            "label": _dump(label) if label else None,
            "photos": photo_docs,
            "grades": [_dump(grade) for grade in grades],
            "decisions": [_dump(decision) for decision in decisions],
            "refunds": [_dump(refund) for refund in refunds],
            "audit": {
                "chain_valid": chain.valid,
                "broken_at_seq": chain.broken_at_seq,
                "problem": chain.problem,
                "events": [_dump(event, exclude={"id"}) for event in chain.events],
            },
            "files": manifest,
        }
        archive.writestr(
            "evidence.json",
            json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    name = ret.rma or f"return-{return_id}"
    return EvidencePack(document=document, filename=f"evidence-{name}.zip")


def _write_photo_files(
    *,
    archive: zipfile.ZipFile,
    session: Session,
    photos: Sequence[Photo],
    blobs: BlobStore,
    pipeline: Any | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stores each photo's files in the zip as they are read; (photo documents, manifest)."""
    manifest: list[dict[str, Any]] = []
    photo_docs = []
    for photo in photos:
        # Embeddings are model internals, not evidence; the hashes identify the image.
        doc = _dump(photo, exclude={"embedding"})
        doc["files"] = {}
        for kind in ("original", "annotated"):
            if not photo.blob_key:
                continue
            data = (
                _read_blob(blobs=blobs, key=photo.blob_key)
                if kind == "original"
                else _annotated(session=session, photo=photo, blobs=blobs, pipeline=pipeline)
            )
            if data is None:
                if kind == "original" or pipeline is not None:
                    doc["files"][kind] = None
                continue
            ext = EXTENSIONS.get(photo.content_type, "bin") if kind == "original" else "png"
            path = f"photos/{photo.id}-{photo.source}-{kind}.{ext}"
            # Photos are already compressed; storing them keeps the export cheap on CPU.
            archive.writestr(path, data, compress_type=zipfile.ZIP_STORED)
            doc["files"][kind] = path
            manifest.append(
                {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            )
        photo_docs.append(doc)
    return photo_docs, manifest


def _read_blob(*, blobs: BlobStore, key: str) -> bytes | None:
    try:
        return blobs.get(key)
    except NotFound:
        # Deleted on request or lost: the pack says so (file null) instead of failing.
        log.warning("evidence: blob %s missing", key[:12])
        return None


def _annotated(
    *, session: Session, photo: Photo, blobs: BlobStore, pipeline: Any | None
) -> bytes | None:
    if pipeline is None and not photo.annotated_blob_key:
        return None
    try:
        return rendered_image(
            session=session, photo=photo, blobs=blobs, pipeline=pipeline, kind="annotated"
        )
    except InspectionError as exc:
        # A missing original or grade: the pack records the gap rather than failing.
        log.warning("evidence: no annotated image for photo %s: %s", photo.id, exc)
        return None


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
