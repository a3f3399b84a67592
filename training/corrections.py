"""QA corrections -> a labelled dataset folder that train-grader takes beside earlier data.

Reads the service database directly: `qa_labels` (the human grade, latest label per photo
wins) joined to `photos` (bytes in the blob store) and, where known, the order line's product
category. Photos whose bytes were deleted are skipped and counted, never guessed.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from inspection.grading.types import GRADES
from inspection.store.blobs import BlobStore
from inspection.store.db import create_db_engine
from inspection.store.models import OrderLine, Photo, ReturnItem
from inspection.store.records import QaLabel
from training.dataset import SPLITS, LabelledPhoto, write_grades_csv
from training.importing import duplicate_groups, stratified_group_split

log = logging.getLogger(__name__)

# Corrections are scarce: most go to training, a few keep val/test honest.
CORRECTION_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}
SUFFIX_BY_TYPE = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
}


@dataclass
class CorrectionSummary:
    """What `import_corrections` wrote and skipped."""

    out_dir: Path
    count: int
    grades: dict[str, int]
    splits: dict[str, int]
    relabelled: int  # the human grade differs from the model's
    skipped_deleted: int
    skipped_missing_blob: int
    skipped_bad_grade: int


def import_corrections(
    *, database_url: str, blob_dir: Path, out_dir: Path, seed: int = 0,
    shares: dict[str, float] | None = None,
) -> CorrectionSummary:  # fmt: skip
    """Exports QA-labelled photos into the dataset layout (grades.csv + images/<split>/)."""
    engine = create_db_engine(url=database_url)
    blobs = BlobStore(Path(blob_dir))
    latest: dict[int, tuple[QaLabel, Photo, str]] = {}
    with Session(engine) as session:
        statement = (
            select(QaLabel, Photo, OrderLine.category)
            .join(Photo, col(Photo.id) == QaLabel.photo_id)
            .outerjoin(ReturnItem, col(ReturnItem.id) == Photo.return_item_id)
            .outerjoin(OrderLine, col(OrderLine.id) == ReturnItem.order_line_id)
            .order_by(col(QaLabel.created_at), col(QaLabel.id))
        )
        for label, photo, category in session.exec(statement).all():
            latest[label.photo_id] = (label, photo, category or "")
    engine.dispose()
    skipped = Counter[str]()
    kept: list[tuple[QaLabel, Photo, str, bytes]] = []
    for label, photo, category in latest.values():
        if label.grade not in GRADES:
            skipped["bad_grade"] += 1
            continue
        if photo.blob_key is None or photo.deleted_at is not None:
            skipped["deleted"] += 1
            continue
        try:
            data = blobs.get(photo.blob_key)
        except Exception:  # NotFound or unreadable: the row cannot become data
            log.warning("photo %s: blob %s is missing, skipped", photo.id, photo.blob_key)
            skipped["missing_blob"] += 1
            continue
        kept.append((label, photo, category, data))
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / "images", ignore_errors=True)
    for s in SPLITS:
        (out_dir / "images" / s).mkdir(parents=True, exist_ok=True)
    groups = duplicate_groups(
        sha256s=[p.sha256 for _, p, _, _ in kept], phashes=[p.phash for _, p, _, _ in kept],
        max_distance=4,
    )  # fmt: skip
    splits = stratified_group_split(
        grades=[lab.grade for lab, _, _, _ in kept], groups=groups, seed=seed,
        shares=shares or CORRECTION_SPLIT,
    )  # fmt: skip
    rows: list[LabelledPhoto] = []
    for (label, photo, category, data), split in zip(kept, splits, strict=True):
        suffix = SUFFIX_BY_TYPE.get(photo.content_type, ".jpg")
        path = out_dir / "images" / split / f"qa_photo_{photo.id}{suffix}"
        path.write_bytes(data)
        rows.append(LabelledPhoto(path=path, split=split, category=category, grade=label.grade))
    write_grades_csv(dataset_dir=out_dir, rows=rows)
    summary = CorrectionSummary(
        out_dir=out_dir,
        count=len(rows),
        grades=dict(Counter(r.grade for r in rows)),
        splits=dict(Counter(r.split for r in rows)),
        relabelled=sum(
            1 for lab, _, _, _ in kept if lab.model_grade and lab.model_grade != lab.grade
        ),
        skipped_deleted=skipped["deleted"],
        skipped_missing_blob=skipped["missing_blob"],
        skipped_bad_grade=skipped["bad_grade"],
    )
    log.info("QA corrections: %d photos written to %s", summary.count, out_dir)
    return summary
