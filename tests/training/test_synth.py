"""The synthetic generator: deterministic per seed, labelled by the documented severity rule."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from training.dataset import CATEGORIES, DEFECT_TYPES, read_grades_csv
from training.synth import PlannedDefect, generate, grade_for, plan_photo


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in {".jpg", ".txt", ".csv"}
    }


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate(out_dir=tmp_path / "a", n=12, seed=3, size=128, contact_sheet=False)
    b = generate(out_dir=tmp_path / "b", n=12, seed=3, size=128, contact_sheet=False)
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len([k for k in da if k.endswith(".jpg")]) == 12
    assert da == db
    assert a.grades == b.grades


def test_other_seed_gives_other_photos(tmp_path: Path) -> None:
    generate(out_dir=tmp_path / "a", n=6, seed=1, size=96, contact_sheet=False)
    generate(out_dir=tmp_path / "b", n=6, seed=2, size=96, contact_sheet=False)
    ja = {v for k, v in _digests(tmp_path / "a").items() if k.endswith(".jpg")}
    jb = {v for k, v in _digests(tmp_path / "b").items() if k.endswith(".jpg")}
    assert not ja & jb


@pytest.mark.parametrize(
    ("defects", "grade"),
    [
        ((), "resell"),
        ((PlannedDefect("scratch", "minor"),), "resell"),
        ((PlannedDefect("scratch", "minor"), PlannedDefect("wear", "minor")), "resell"),
        ((PlannedDefect("scratch", "minor"),) * 3, "refurbish"),
        ((PlannedDefect("dent", "moderate"),), "refurbish"),
        ((PlannedDefect("crack", "severe"), PlannedDefect("wear", "minor")), "reject"),
    ],
)
def test_severity_rule(defects: tuple[PlannedDefect, ...], grade: str) -> None:
    assert grade_for(defects) == grade


def test_plans_cover_categories_and_missing_parts_are_never_minor() -> None:
    plans = [plan_photo(index=i, seed=0) for i in range(400)]
    assert {p.category for p in plans} == set(CATEGORIES)
    assert {p.grade for p in plans} == {"resell", "refurbish", "reject"}
    for p in plans:
        assert p.grade == grade_for(p.defects)
        assert all(d.severity != "minor" for d in p.defects if d.defect_type == "missing_part")


def test_dataset_layout_labels_and_contact_sheet(synthetic_dataset: Path) -> None:
    rows = read_grades_csv(dataset_dir=synthetic_dataset)
    assert len(rows) == 48
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert (synthetic_dataset / "contact_sheet.png").stat().st_size > 10_000
    with (synthetic_dataset / "grades.csv").open() as fh:
        assert next(csv.reader(fh)) == ["file", "split", "category", "grade", "defects"]
    boxes = 0
    for r in rows:
        assert r.path.exists()
        label = synthetic_dataset / "labels" / r.split / (r.path.stem + ".txt")
        for line in label.read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            assert 0 <= int(cls) < len(DEFECT_TYPES)
            assert all(0.0 <= float(v) <= 1.0 for v in (cx, cy, w, h))
            assert float(w) > 0 and float(h) > 0
            boxes += 1
        if r.grade == "resell" and not r.defects:
            assert label.read_text() == ""
    assert boxes > 10
    data = (synthetic_dataset / "data.yaml").read_text()
    assert str(synthetic_dataset.resolve()) in data and "download" not in data
