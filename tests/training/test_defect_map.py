"""Defect boxes become the grader's per-cell targets, and augmentation moves them with the photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.dataset import LabelledPhoto
from training.defect_map import box_mask, cell_targets, grid_cells, label_path


def _photo(root: Path, *, grade: str, labels: str | None, split: str = "train") -> LabelledPhoto:
    image = root / "images" / split / f"{grade}.jpg"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"")  # only the path matters here
    if labels is not None:
        txt = root / "labels" / split / f"{grade}.txt"
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text(labels, encoding="utf-8")
    return LabelledPhoto(path=image, split=split, category="tile", grade=grade)


def test_label_path_mirrors_the_image_path(tmp_path: Path) -> None:
    photo = _photo(tmp_path, grade="reject", labels="", split="val")
    assert label_path(photo) == tmp_path / "labels" / "val" / "reject.txt"


def test_box_is_rasterised_where_the_yolo_line_says(tmp_path: Path) -> None:
    # a box over the right half, top quarter: cx 0.75, cy 0.125, w 0.5, h 0.25
    photo = _photo(tmp_path, grade="reject", labels="0 0.75 0.125 0.5 0.25\n")
    mask = box_mask(photo, height=40, width=80)
    assert mask is not None
    assert mask.shape == (40, 80)
    assert mask[:10, 40:].all()
    assert mask.sum() == 10 * 40


def test_clean_photo_with_empty_labels_is_a_known_all_clear_map(tmp_path: Path) -> None:
    mask = box_mask(_photo(tmp_path, grade="resell", labels=""), height=8, width=8)
    assert mask is not None and mask.sum() == 0


@pytest.mark.parametrize(
    ("grade", "labels"),
    [("reject", ""), ("refurbish", None), ("resell", None)],
    ids=["defect-grade-without-boxes", "no-label-file", "clean-without-label-file"],
)
def test_unknown_maps_are_none(tmp_path: Path, grade: str, labels: str | None) -> None:
    assert box_mask(_photo(tmp_path, grade=grade, labels=labels), height=8, width=8) is None


def test_cell_targets_mark_only_cells_the_box_touches() -> None:
    assert grid_cells(224) == 7
    assert grid_cells(96) == 3
    mask = np.zeros((700, 700), np.uint8)
    mask[10:20, 690:700] = 1  # a small defect in the top-right corner
    targets = cell_targets(mask, size=224)
    assert targets.shape == (7, 7)
    assert targets[0, 6] == 1.0
    assert targets.sum() == 1.0


def test_augmentation_keeps_the_defect_under_its_mask(tmp_path: Path) -> None:
    """Flips and crops move the mask with the pixels, and never crop a box away."""
    pytest.importorskip("torch", reason="training extra (torch) not installed")
    from inspection.grading.model_card import Preprocessing
    from training.grader import GradedPhotos

    image = np.full((60, 100, 3), 40, np.uint8)
    image[5:15, 70:95] = 250  # the "defect": bright, and where the box is
    mask = np.zeros((60, 100), np.uint8)
    mask[5:15, 70:95] = 1
    photos = GradedPhotos(photos=[], spec=Preprocessing(size=64, mode="squash"), augment=True)
    for _ in range(40):
        out, out_mask = photos._augment(image, mask)
        assert out_mask is not None
        assert out_mask.shape == out.shape[:2]
        assert int(out_mask.sum()) == int(mask.sum())  # the whole box is still in view
        inside = out[out_mask.astype(bool)].mean()
        outside = out[~out_mask.astype(bool)].mean()
        assert inside > outside + 100
