"""Photos of a return: upload (intake -> grade -> blob store -> rows), unit comparison between
customer and station photos, privacy deletion and the retention purge.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlmodel import Session, col, func, select

from inspection.decisions.types import UnitComparison
from inspection.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceUnavailable
from inspection.grading.aggregate import combine_photo_grades
from inspection.grading.pipeline import Upload
from inspection.grading.types import (
    Defect,
    ExifFacts,
    IntakePhoto,
    ItemGrade,
    PhotoFacts,
    PhotoGrade,
    QualityReport,
)
from inspection.returns import facts
from inspection.returns.audit import record_event
from inspection.returns.lifecycle import begin_write, ensure_status, lock_return
from inspection.store.blobs import BlobStore
from inspection.store.models import (
    Customer,
    Inspection,
    OrderLine,
    Photo,
    Return,
    ReturnItem,
    utcnow,
)

log = logging.getLogger(__name__)

# Where each source may upload: customers while claiming, the station once the parcel is coming.
SOURCE_STATUSES = {
    "customer": ("return_requested",),
    "station": ("label_sent", "item_received"),
}


@dataclass(frozen=True)
class PhotosResult:
    photos: list[Photo]
    grades: list[Inspection]  # each photo's own grade, in the order of `photos`
    item: Inspection


# A few writer threads shared by all requests (the work is disk I/O, not CPU).
_BLOB_WRITES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-write")


def _store_originals(*, blobs: BlobStore, intakes: list[IntakePhoto]) -> list[str]:
    return [blobs.put(intake.data, key=intake.facts.sha256) for intake in intakes]


def _check_source(*, ret: Return, source: str, role: str) -> None:
    if source not in SOURCE_STATUSES:
        raise InvalidInput(
            f"unknown photo source {source!r}", hint="send source=customer or source=station"
        )
    if role == "customer" and source != "customer":
        raise Forbidden("customers may only upload customer photos", hint="send source=customer")
    if source == "station" and role not in ("station", "admin"):
        raise Forbidden(
            "station photos come from the station role",
            hint="use a station API key to upload station photos",
        )
    if source == "customer" and role not in ("customer", "admin", "integration"):
        raise Forbidden(f"the {role} role may not upload customer photos")
    ensure_status(ret=ret, allowed=SOURCE_STATUSES[source], action=f"add {source} photos to")


def _check_photo_room(
    *, session: Session, ret: Return, source: str, adding: int, limit: int
) -> None:
    """409 when this request would take the return's photos of `source` past the limit."""
    have = session.exec(
        select(func.count())
        .select_from(Photo)
        .where(Photo.return_id == ret.id, Photo.source == source)
    ).one()
    if have + adding > limit:
        raise Conflict(
            f"this return already has {have} {source} photo(s); {adding} more would pass the "
            f"limit of {limit}",
            hint=f"send at most {max(0, limit - have)} more, or ask staff if more views are needed",
            code="photo_limit_reached",
            details={"max_photos_per_return": limit, "already": have, "sent": adding},
        )


def add_photos(
    *,
    session: Session,
    ret: Return,
    uploads: list[Upload],
    source: str,
    role: str,
    actor: str,
    return_item_id: int | None,
    pipeline: Any,
    blobs: BlobStore,
    max_photos: int,
    max_per_return: int,
) -> PhotosResult:
    """Checks, grades and stores photos; a rejected file rejects the request and writes nothing."""
    _check_source(ret=ret, source=source, role=role)
    if not 1 <= len(uploads) <= max_photos:
        raise InvalidInput(
            f"send between 1 and {max_photos} photos per request ({len(uploads)} sent)",
            hint="split the photos over several requests",
        )
    # Checked before the models run (cheap refusal) and again under the write lock (two
    # requests racing past the first check cannot both land).
    _check_photo_room(
        session=session, ret=ret, source=source, adding=len(uploads), limit=max_per_return
    )
    items = session.exec(select(ReturnItem).where(ReturnItem.return_id == ret.id)).all()
    item = None
    if return_item_id is not None:
        item = next((i for i in items if i.id == return_item_id), None)
        if item is None:
            raise InvalidInput(
                f"return_item_id {return_item_id} is not an item of this return",
                hint="use one of the item ids listed in the return",
            )
    target = item or items[0]
    line = session.get(OrderLine, target.order_line_id)
    category = line.category if line else None
    # Everything that can reject a file happens before anything is written.
    intakes = pipeline.intake_many(uploads=uploads)
    # Originals go to the blob store while the models run: the write and its fsync are I/O
    # wait, ~10 ms a photo, that used to sit in the request after grading and inside the
    # database write lock. Content-addressed, so a retry rewrites nothing; a request that fails
    # from here on leaves an unreferenced file no row or API shows (as a failed commit always
    # could), never a row without its bytes.
    stored = _BLOB_WRITES.submit(_store_originals, blobs=blobs, intakes=intakes)
    graded: ItemGrade = pipeline.grade_photos(photos=intakes, category=category, source=source)
    # The annotated image is drawn when someone looks at it (`rendered_image`), not here: it
    # cost a PNG encode per photo (~30 ms, a quarter of an upload) for a picture most uploads
    # never have viewed.
    # The item grade covers every photo of this source so far, not only this request's.
    item_row = _item_grade(
        session=session,
        ret=ret,
        source=source,
        item_id=item.id if item else None,
        graded=graded,
        pipeline=pipeline,
        category=category,
        new_intakes=intakes,
    )
    # Grading ran without holding any lock; the status is re-checked under the write lock.
    item_id = item.id if item else None
    lock_return(session=session, ret=ret)
    _check_source(ret=ret, source=source, role=role)
    _check_photo_room(
        session=session, ret=ret, source=source, adding=len(uploads), limit=max_per_return
    )
    # Blobs first, rows after: a committed row always points at bytes on disk.
    try:
        keys = stored.result()
    except OSError as exc:
        log.error("blob store write failed: %s", exc)
        raise ServiceUnavailable(
            "the photo store cannot save files right now; nothing was recorded",
            hint="retry in a few minutes; if it persists, tell the operator (disk full?)",
        ) from exc
    photos = [
        Photo(
            return_id=ret.id,  # type: ignore[arg-type]
            return_item_id=item_id,
            source=source,
            blob_key=key,
            sha256=intake.facts.sha256,
            phash=intake.facts.phash,
            content_type=intake.facts.content_type,
            byte_size=intake.facts.byte_size,
            width=intake.facts.width,
            height=intake.facts.height,
            exif=intake.facts.exif.model_dump(mode="json"),
            quality_passed=grade.quality.passed,
            quality_flags=list(grade.quality.flags),
            quality_advice=list(grade.quality.advice),
            embedding=[float(v) for v in grade.embedding] if grade.embedding else None,
        )
        for intake, grade, key in zip(intakes, graded.photos, keys, strict=True)
    ]
    # One flush gives every photo its id for the per-photo inspections; the audit event's
    # flush below writes those and the item grade (each flush is a unit-of-work pass).
    session.add_all(photos)
    session.flush()
    grades = [
        Inspection(
            return_id=ret.id,  # type: ignore[arg-type]
            photo_id=photo.id,
            return_item_id=photo.return_item_id,
            scope="photo",
            source=source,
            grade=grade.grade,
            confidence=float(grade.confidence),
            probabilities={k: float(v) for k, v in grade.probabilities.items()},
            defects=[d.model_dump(mode="json") for d in grade.defects],
            model_version=grade.model_version,
            detector_version=grade.detector_version,
            latency_ms=float(grade.latency_ms),
        )
        for photo, grade in zip(photos, graded.photos, strict=True)
    ]
    session.add_all([*grades, item_row])
    record_event(
        session=session,
        return_id=ret.id,
        actor=actor,
        action=f"photos.added.{source}",
        before=None,
        after={
            "photo_ids": [p.id for p in photos],
            "sha256": [p.sha256 for p in photos],
            "item_grade": item_row.grade,
            "quality_flags": [p.quality_flags for p in photos],
        },
        model_version=item_row.model_version,
        confidence=item_row.confidence,
    )
    ret.updated_at = utcnow()
    session.add(ret)
    # Every value was set here (ids by the flush, timestamps in Python), so the committed rows
    # need no reload: re-reading them (each photo's 1280-float embedding included) was ~5 % of
    # an upload's CPU.
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    return PhotosResult(photos=photos, grades=grades, item=item_row)


def _item_grade(
    *,
    session: Session,
    ret: Return,
    source: str,
    item_id: int | None,
    graded: ItemGrade,
    pipeline: Any,
    category: str | None,
    new_intakes: list[IntakePhoto],
) -> Inspection:
    new_hashes = {i.facts.sha256 for i in new_intakes}
    earlier = [
        p
        for p in facts.return_photos(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            source=source,
            item_id=item_id,
            with_embeddings=False,
        )
        if p.deleted_at is None and p.blob_key and p.sha256 not in new_hashes
    ]
    overall = graded
    if earlier:
        # The item grade covers every photo so far. Earlier photos keep the grade they were
        # given at upload (stored per photo), so only the new ones ran the models: re-decoding
        # and regrading all of them made each upload slower than the last.
        stored = _stored_photo_grades(session=session, photos=earlier)
        overall = combine_photo_grades(
            photos=[*graded.photos, *stored],
            thresholds=pipeline.review_thresholds(category=category),
        )
    return Inspection(
        return_id=ret.id,  # type: ignore[arg-type]
        return_item_id=item_id,
        scope="item",
        source=source,
        grade=overall.grade,
        confidence=float(overall.confidence),
        probabilities={k: float(v) for k, v in overall.probabilities.items()},
        defects=[d.model_dump(mode="json") for p in overall.photos for d in p.defects],
        needs_review=overall.needs_review,
        reason_codes=list(overall.reason_codes),
        model_version=overall.model_version,
        detector_version=overall.detector_version,
        latency_ms=float(sum(p.latency_ms for p in overall.photos)),
    )


def _stored_photo_grades(*, session: Session, photos: list[Photo]) -> list[PhotoGrade]:
    """Per-photo grades as recorded at upload, rebuilt for the item-grade combination."""
    by_photo = {
        row.photo_id: row
        for row in session.exec(
            select(Inspection)
            .where(col(Inspection.photo_id).in_([p.id for p in photos]))
            .where(Inspection.scope == "photo")
            .order_by(col(Inspection.id))
        ).all()
    }
    grades: list[PhotoGrade] = []
    for photo in photos:
        row = by_photo.get(photo.id)
        if row is None:
            log.warning("photo %s has no recorded grade; left out of the item grade", photo.id)
            continue
        grades.append(
            PhotoGrade(
                grade=row.grade,  # type: ignore[arg-type]
                probabilities=dict(row.probabilities),
                confidence=row.confidence,
                defects=[Defect.model_validate(d) for d in row.defects],
                quality=QualityReport(
                    passed=photo.quality_passed,
                    flags=list(photo.quality_flags),
                    advice=list(photo.quality_advice),
                ),
                facts=PhotoFacts(
                    sha256=photo.sha256,
                    phash=photo.phash,
                    content_type=photo.content_type,
                    format=photo.content_type.split("/")[-1],
                    width=photo.width,
                    height=photo.height,
                    byte_size=photo.byte_size,
                    exif=ExifFacts.model_validate(photo.exif or {}),
                ),
                model_version=row.model_version or "unknown",
                detector_version=row.detector_version,
                latency_ms=row.latency_ms,
            )
        )
    return grades


def compare_return_units(
    *, session: Session, ret: Return, item_id: int | None, pipeline: Any, blobs: BlobStore
) -> UnitComparison | None:
    """Customer vs station photos of one item (same unit? new damage?); None if a side is empty."""
    from inspection.grading.unit_match import compare_units

    def side(source: str) -> list[Photo]:
        return [
            p
            for p in facts.return_photos(
                session=session,
                return_id=ret.id,  # type: ignore[arg-type]
                source=source,
                item_id=item_id,
            )
            if p.deleted_at is None and p.blob_key
        ]

    def images(photos: list[Photo]) -> list[Any]:
        decoded = []
        for photo in photos:
            try:
                data = blobs.get(photo.blob_key)  # type: ignore[arg-type]
                decoded.append(pipeline.intake(data=data, content_type=None, filename=None).image)
            except Exception:
                log.warning("photo %s could not be decoded for unit comparison", photo.id)
        return decoded

    def embeddings(photos: list[Photo]) -> list[list[float]]:
        return [p.embedding for p in photos if p.embedding]

    customer, station = side("customer"), side("station")
    if not customer or not station:
        return None
    grades = {
        source: facts.latest_item_grade(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            sources=(source,),
            item_id=item_id,
        )
        for source in ("customer", "station")
    }
    customer_evidence = facts.photo_evidence(session=session, photos=customer)
    station_evidence = facts.photo_evidence(session=session, photos=station)
    return compare_units(
        customer_images=images(customer),
        station_images=images(station),
        customer_embeddings=embeddings(customer) or None,
        station_embeddings=embeddings(station) or None,
        customer_defects=[d for e in customer_evidence for d in e.defect_types],
        station_defects=[d for e in station_evidence for d in e.defect_types],
        customer_grade=grades["customer"].grade if grades["customer"] else None,  # type: ignore[arg-type]
        station_grade=grades["station"].grade if grades["station"] else None,  # type: ignore[arg-type]
    )


def get_photo(*, session: Session, photo_id: int) -> Photo:
    """The photo with that id; NotFound otherwise."""
    photo = session.get(Photo, photo_id)
    if photo is None:
        raise NotFound(f"no photo {photo_id}", hint="check the photo id in the return")
    return photo


def photo_bytes(*, photo: Photo, blobs: BlobStore) -> bytes:
    """The original image of a photo as uploaded; NotFound once deleted."""
    if photo.deleted_at is not None or photo.blob_key is None:
        raise NotFound(f"photo {photo.id} was deleted", hint="deleted photos cannot be shown again")
    return blobs.get(photo.blob_key)


RenderKind = Literal["annotated", "heatmap"]
_RENDER_CACHE_SIZE = 64
_rendered: OrderedDict[tuple[int, str, RenderKind], bytes] = OrderedDict()
_rendered_lock = threading.Lock()


def rendered_image(
    *, session: Session, photo: Photo, blobs: BlobStore, pipeline: Any, kind: RenderKind
) -> bytes:
    """The photo with its defect boxes and grade banner drawn on it, or the grader's heatmap,
    as PNG; drawn from the original and the grade recorded at upload, on first view.

    The few photos someone opens get drawn (and kept in a small in-process cache, keyed by
    the original's hash, so the station's re-renders are free); uploads no longer pay for it.
    """
    if kind == "annotated" and photo.annotated_blob_key and photo.deleted_at is None:
        return blobs.get(photo.annotated_blob_key)  # drawn at upload by earlier versions
    original = photo_bytes(photo=photo, blobs=blobs)
    cache_key = (photo.id or 0, photo.blob_key or "", kind)
    with _rendered_lock:
        if cache_key in _rendered:
            _rendered.move_to_end(cache_key)
            return _rendered[cache_key]
    intake = pipeline.intake(data=original, content_type=photo.content_type, filename=None)
    if kind == "heatmap":
        image = pipeline.heatmap(photo=intake)
    else:
        grades = _stored_photo_grades(session=session, photos=[photo])
        if not grades:
            raise NotFound(
                f"photo {photo.id} has no recorded grade to draw",
                hint="fetch /image for the photo as uploaded",
            )
        image = pipeline.annotate(photo=intake, grade=grades[0])
    with _rendered_lock:
        _rendered[cache_key] = image
        while len(_rendered) > _RENDER_CACHE_SIZE:
            _rendered.popitem(last=False)
    return image


def delete_customer_photos(
    *, session: Session, customer_id: int, blobs: BlobStore, actor: str, reason: str
) -> int:
    """Erases a customer's photos on request; the audit log keeps that it happened."""
    begin_write(session=session)
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"no customer {customer_id}", hint="check the customer id")
    photos = list(
        session.exec(
            select(Photo)
            .join(Return, col(Return.id) == Photo.return_id)
            .where(
                Return.customer_id == customer_id,
                Photo.source == "customer",
                col(Photo.deleted_at).is_(None),
            )
        ).all()
    )
    return _erase_with_audit(
        session=session, photos=photos, blobs=blobs, actor=actor, reason=reason
    )


def _erase_with_audit(
    *, session: Session, photos: list[Photo], blobs: BlobStore, actor: str, reason: str
) -> int:
    by_return: dict[int, list[int]] = {}
    for photo in photos:
        by_return.setdefault(photo.return_id, []).append(photo.id)  # type: ignore[arg-type]
    # Rows first, then blobs after commit: a failed commit must not lose images still referenced.
    now = utcnow()
    keys: set[str] = set()
    for photo in photos:
        keys.update(k for k in (photo.blob_key, photo.annotated_blob_key) if k)
        photo.blob_key = None
        photo.annotated_blob_key = None
        photo.embedding = None
        photo.exif = {}
        photo.deleted_at = now
        session.add(photo)
    session.flush()
    for return_id, ids in sorted(by_return.items()):
        record_event(
            session=session,
            return_id=return_id,
            actor=actor,
            action="photos.deleted",
            before=None,
            after={"photo_ids": ids, "reason": reason},
        )
    session.commit()
    in_use = set(
        session.exec(select(Photo.blob_key).where(col(Photo.blob_key).in_(keys))).all()
    ) | set(
        session.exec(
            select(Photo.annotated_blob_key).where(col(Photo.annotated_blob_key).in_(keys))
        ).all()
    )
    for key in keys - in_use:
        blobs.delete(key)
    return len(photos)


def purge_expired_photos(
    *, session: Session, blobs: BlobStore, retention_days: int, actor: str = "retention"
) -> int:
    """Erases customer photos older than the retention period; returns how many."""
    begin_write(session=session)
    cutoff = utcnow() - timedelta(days=retention_days)
    photos = list(
        session.exec(
            select(Photo).where(
                Photo.source == "customer",
                col(Photo.deleted_at).is_(None),
                Photo.created_at < cutoff,
            )
        ).all()
    )
    return _erase_with_audit(
        session=session,
        photos=photos,
        blobs=blobs,
        actor=actor,
        reason=f"retention of {retention_days} days expired",
    )
