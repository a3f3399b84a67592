"""Import of labelled photos: masks/VOC/YOLO become detector labels, duplicates stay together."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.dataset import read_grades_csv
from training.importing import (
    duplicate_groups,
    import_dataset,
    load_mapping,
    mask_boxes,
    stratified_group_split,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("INSPECTION_SHARED_DATA", REPO.parent / "shared" / "data"))


def _photo(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A random textured photo: every call differs in perceptual hash."""
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _write(path: Path, image: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])


@pytest.fixture()
def labelled_tree(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for cls in ("good", "scuffed", "broken"):
        for i in range(10):
            _write(src / cls / f"{cls}{i}.jpg", _photo(rng))
    # a mask beside one broken photo: two white components -> two boxes
    mask = np.zeros((96, 96), np.uint8)
    mask[10:20, 10:30] = 255
    mask[60:80, 50:60] = 255
    cv2.imwrite(str(src / "broken" / "broken0.png"), mask)
    # Pascal-VOC beside a scuffed photo
    (src / "scuffed" / "scuffed0.xml").write_text(
        "<annotation><object><name>scratch</name><bndbox><xmin>5</xmin><ymin>6</ymin>"
        "<xmax>50</xmax><ymax>40</ymax></bndbox></object></annotation>"
    )
    # YOLO txt beside another scuffed photo
    (src / "scuffed" / "scuffed1.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    # exact duplicate (same bytes) in another class folder, and a near duplicate (re-encoded)
    (src / "good" / "copy_of_broken3.jpg").write_bytes(
        (src / "broken" / "broken3.jpg").read_bytes()
    )
    img = cv2.imread(str(src / "good" / "good4.jpg"))
    _write(src / "good" / "good4_again.jpg", cv2.resize(cv2.resize(img, (80, 80)), (96, 96)), 70)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "grades: {good: resell, scuffed: refurbish, broken: reject, scratch: refurbish}\n"
        "defects: {broken: break}\n"
        "yolo_names: [scuff]\n"
    )
    return src, mapping


def test_mask_components_become_boxes() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[5:10, 5:15] = 255
    mask[30:45, 30:33] = 255
    mask[0, 49] = 255  # a speck below the minimum area
    assert sorted(mask_boxes(mask)) == [(5.0, 5.0, 15.0, 10.0), (30.0, 30.0, 33.0, 45.0)]


def test_import_converts_labels_and_keeps_duplicates_together(
    labelled_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    src, mapping = labelled_tree
    out = tmp_path / "out"
    summary = import_dataset(src=src, mapping_file=mapping, out_dir=out, seed=0)
    rows = read_grades_csv(dataset_dir=out)
    assert summary.count == len(rows) == 32
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert summary.defect_classes == ["break", "scratch", "scuff"]
    by_name = {r.path.stem: r for r in rows}

    def label(stem: str) -> list[str]:
        r = by_name[stem]
        return (out / "labels" / r.split / f"{stem}.txt").read_text().splitlines()

    mask_lines = label("broken__broken0")
    assert len(mask_lines) == 2 and all(line.startswith("0 ") for line in mask_lines)
    (voc,) = label("scuffed__scuffed0")
    cls, cx, _cy, w, _h = voc.split()
    assert cls == "1"
    assert float(cx) == pytest.approx(27.5 / 96, abs=1e-4) and float(w) == pytest.approx(
        45 / 96, abs=1e-4
    )
    (yolo,) = label("scuffed__scuffed1")
    assert yolo.split()[0] == "2"
    assert [float(v) for v in yolo.split()[1:]] == pytest.approx([0.5, 0.5, 0.25, 0.5], abs=1e-4)
    assert label("good__good0") == []
    # duplicates never straddle splits
    assert by_name["good__copy_of_broken3"].split == by_name["broken__broken3"].split
    assert by_name["good__good4_again"].split == by_name["good__good4"].split
    assert summary.duplicate_groups == 2
    assert summary.grade_conflicts == 1  # the same bytes filed as good and broken
    data_yaml = (out / "data.yaml").read_text()
    assert "break" in data_yaml and str(out.resolve()) in data_yaml


def test_split_is_seeded_and_stratified(labelled_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, mapping = labelled_tree
    a = import_dataset(src=src, mapping_file=mapping, out_dir=tmp_path / "a", seed=5)
    b = import_dataset(src=src, mapping_file=mapping, out_dir=tmp_path / "b", seed=5)
    sa = {r.path.name: r.split for r in read_grades_csv(dataset_dir=tmp_path / "a")}
    sb = {r.path.name: r.split for r in read_grades_csv(dataset_dir=tmp_path / "b")}
    assert sa == sb and a.splits == b.splits
    for grade in ("resell", "refurbish", "reject"):
        splits = {r.split for r in read_grades_csv(dataset_dir=tmp_path / "a") if r.grade == grade}
        assert splits == {"train", "val", "test"}


def test_groups_never_straddle_on_many_random_groupings() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        groups = list(rng.integers(0, 40, 120))
        grades = [("resell", "refurbish", "reject")[g % 3] for g in groups]
        splits = stratified_group_split(
            grades=grades, groups=groups, seed=0, shares={"train": 0.7, "val": 0.15, "test": 0.15}
        )
        for g in set(groups):
            assert len({s for s, gg in zip(splits, groups, strict=True) if gg == g}) == 1


def test_duplicate_groups_by_sha_and_phash() -> None:
    groups = duplicate_groups(
        sha256s=["a", "b", "a", "c"],
        phashes=["ffff000000000000", "0000ffff00000000", "1234123412341234", "ffff000000000001"],
        max_distance=2,
    )
    assert groups[0] == groups[2] == groups[3]
    assert groups[1] != groups[0]


def test_unmapped_class_is_a_clear_error(labelled_tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = labelled_tree
    partial = tmp_path / "partial.yaml"
    partial.write_text("grades: {good: resell}\nyolo_names: [scuff]\n")
    with pytest.raises(ValueError, match=r"no grade for classes .*scuffed"):
        import_dataset(src=src, mapping_file=partial, out_dir=tmp_path / "o", seed=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("grades: {good: sell}\n")
    with pytest.raises(ValueError, match="unknown grades"):
        load_mapping(bad)


def test_magnetic_tile_mapping_file_matches_the_data_readme() -> None:
    mapping = load_mapping(REPO / "datasets" / "real" / "magnetic-tile.grades.yaml")
    assert mapping.grades == {
        "free": "resell", "uneven": "refurbish", "fray": "refurbish",
        "blowhole": "refurbish", "crack": "reject", "break": "reject",
    }  # fmt: skip


@pytest.mark.shared_data
def test_import_real_magnetic_tile_masks(tmp_path: Path) -> None:
    src = SHARED / "magnetic_tile"
    if not src.is_dir():
        pytest.skip(f"real photos not present at {src} (set INSPECTION_SHARED_DATA)")
    # a small slice keeps the test quick: two classes, 15 photos each
    sub = tmp_path / "src"
    for cls in ("free", "crack"):
        (sub / cls).mkdir(parents=True)
        for jpg in sorted((src / cls).glob("*.jpg"))[:15]:
            (sub / cls / jpg.name).symlink_to(jpg)
            (sub / cls / jpg.with_suffix(".png").name).symlink_to(jpg.with_suffix(".png"))
    summary = import_dataset(
        src=sub, mapping_file=REPO / "datasets" / "real" / "magnetic-tile.grades.yaml",
        out_dir=tmp_path / "out", seed=0,
    )  # fmt: skip
    assert summary.count == 30
    rows = read_grades_csv(dataset_dir=tmp_path / "out")
    cracked = [r for r in rows if r.grade == "reject"]
    assert all(r.defects == ("crack",) for r in cracked)
