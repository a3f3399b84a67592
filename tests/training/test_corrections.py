"""QA relabels in the service database become a dataset folder train-grader can read."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from sqlmodel import Session, SQLModel

from inspection.grading.intake import perceptual_hash
from inspection.store.blobs import BlobStore
from inspection.store.db import create_db_engine
from inspection.store.models import Customer, Order, OrderLine, Photo, Return, ReturnItem
from inspection.store.records import QaLabel
from training.corrections import import_corrections
from training.dataset import read_grades_csv, read_many


def _jpeg(seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (5, 5, 3), dtype=np.uint8), (64, 64))
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes(), perceptual_hash(image)


def test_corrections_become_a_labelled_set(tmp_path: Path, synthetic_dataset: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = create_db_engine(url=url)
    SQLModel.metadata.create_all(engine)
    blobs = BlobStore(tmp_path / "blobs")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with Session(engine) as s:
        customer = Customer(external_id="c-1", email="c@example.com")
        s.add(customer)
        s.flush()
        order = Order(order_number="SO-1", customer_id=customer.id, currency="EUR")
        s.add(order)
        s.flush()
        line = OrderLine(
            order_id=order.id,
            sku="PH-1",
            name="Phone",
            category="electronics",
            price_cents=49900,
            currency="EUR",
        )
        ret = Return(order_id=order.id, customer_id=customer.id)
        s.add_all([line, ret])
        s.flush()
        item = ReturnItem(return_id=ret.id, order_line_id=line.id, reason_code="damaged")
        s.add(item)
        s.flush()
        photos = []
        for k in range(12):
            data, phash = _jpeg(k)
            key = blobs.put(data)
            photo = Photo(
                return_id=ret.id,
                return_item_id=item.id,
                source="station",
                blob_key=key,
                sha256=hashlib.sha256(data).hexdigest(),
                phash=phash,
                content_type="image/jpeg",
                byte_size=len(data),
                width=64,
                height=64,
            )
            s.add(photo)
            photos.append(photo)
        deleted = Photo(
            return_id=ret.id,
            source="customer",
            blob_key=None,
            sha256="0" * 64,
            phash="0" * 16,
            content_type="image/jpeg",
            byte_size=1,
            width=1,
            height=1,
        )
        s.add(deleted)
        s.flush()
        grades = ["resell", "refurbish", "reject"]
        for k, photo in enumerate(photos):
            s.add(
                QaLabel(
                    photo_id=photo.id,
                    return_id=ret.id,
                    grade=grades[k % 3],
                    model_grade="resell",
                    reason="qa",
                    labeled_by="qa-1",
                    created_at=t0 + timedelta(minutes=k),
                )
            )
        # a later relabel of photo 0 wins over the first one
        s.add(
            QaLabel(
                photo_id=photos[0].id,
                return_id=ret.id,
                grade="reject",
                model_grade="resell",
                reason="second look",
                labeled_by="qa-2",
                created_at=t0 + timedelta(hours=1),
            )
        )
        s.add(
            QaLabel(
                photo_id=deleted.id,
                return_id=ret.id,
                grade="reject",
                reason="gone",
                labeled_by="qa-1",
                created_at=t0,
            )
        )
        s.commit()
        first_id = photos[0].id
    engine.dispose()

    out = tmp_path / "corrections"
    summary = import_corrections(database_url=url, blob_dir=tmp_path / "blobs", out_dir=out)
    assert summary.count == 12
    assert summary.skipped_deleted == 1
    assert summary.grades == {"reject": 5, "resell": 3, "refurbish": 4}
    rows = read_grades_csv(dataset_dir=out)
    assert {r.category for r in rows} == {"electronics"}
    assert next(r for r in rows if r.path.name == f"qa_photo_{first_id}.jpg").grade == "reject"
    assert all(r.path.exists() and r.path.read_bytes()[:2] == b"\xff\xd8" for r in rows)
    assert "train" in summary.splits
    # train-grader takes corrections together with earlier data
    combined = read_many(dataset_dirs=[synthetic_dataset, out])
    assert len(combined) == 48 + 12
