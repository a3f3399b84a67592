"""Where the defects are, as a training signal for the grader.

A grade hangs on small things: a pore of a few pixels in a tile photo, a hairline crack on a
screen. Averaged over the whole image they drown, and a few hundred photos are not enough for
the grader to find them from the grade alone. The defect boxes that `training import` and
`training synth` already write as detector labels say where to look: rasterised onto the
grader's last feature grid (one cell per 32 pixels of model input), they become a per-cell
target for a small defect-map head, and the strongest cell feeds the grade (see
`training.grader.GraderNet`). The map is training-only supervision; the export keeps the
service's `logits` / `embedding` contract.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.dataset import LabelledPhoto

# Stride of EfficientNet-Lite0's last feature map relative to the model input.
FEATURE_STRIDE = 32


def label_path(photo: LabelledPhoto) -> Path:
    """The YOLO label file of a dataset photo: `images/<split>/x.jpg` -> `labels/<split>/x.txt`."""
    split_dir = photo.path.parent
    return split_dir.parent.parent / "labels" / split_dir.name / f"{photo.path.stem}.txt"


def box_mask(photo: LabelledPhoto, *, height: int, width: int) -> np.ndarray | None:
    """A uint8 mask (1 inside any defect box) of the photo's size, or None when unknown.

    Unknown means no label file, or a defect grade whose label file is empty (nobody drew the
    boxes): such photos train the grade only. A resell photo with an empty label file is a known
    all-clear map.
    """
    path = label_path(photo)
    if not path.is_file():
        return None
    mask = np.zeros((height, width), np.uint8)
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        return mask if photo.grade == "resell" else None
    for parts in lines:
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        x0 = int(np.floor((cx - bw / 2) * width))
        y0 = int(np.floor((cy - bh / 2) * height))
        x1 = int(np.ceil((cx + bw / 2) * width))
        y1 = int(np.ceil((cy + bh / 2) * height))
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1
    return mask


def grid_cells(size: int) -> int:
    """Side of the grader's last feature grid for a square input of `size` pixels."""
    return -(-size // FEATURE_STRIDE)


def cell_targets(mask: np.ndarray, *, size: int) -> np.ndarray:
    """1.0 for each feature cell that any defect pixel falls in (squashed like the image)."""
    n = grid_cells(size)
    coverage = cv2.resize(mask.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    return (coverage > 0).astype(np.float32)
