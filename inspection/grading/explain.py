"""Explanations for people: defect boxes, labels and a grade banner; an occlusion heatmap.

Inspectors and customers see *where* and *why* a grade was given without reading JSON.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.grading.predictors import GraderResult, Predictor
from inspection.grading.types import PhotoGrade

# BGR colours (OpenCV draws in BGR): green resell, amber refurbish, red reject.
GRADE_COLOURS = {"resell": (60, 160, 40), "refurbish": (0, 160, 235), "reject": (40, 40, 210)}
SEVERITY_COLOURS = {"minor": (0, 215, 255), "moderate": (0, 140, 255), "severe": (0, 0, 230)}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate_photo(*, image: np.ndarray, grade: PhotoGrade) -> bytes:
    """Draws defect boxes with labels and a grade banner on an RGB image; returns PNG bytes."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    height, width = canvas.shape[:2]
    scale = max(0.4, min(width, height) / 900)
    thickness = max(1, round(2 * scale))
    for defect in grade.defects:
        x1, y1, x2, y2 = defect.box
        p1 = (round(x1 * width), round(y1 * height))
        p2 = (round(x2 * width), round(y2 * height))
        colour = SEVERITY_COLOURS[defect.severity]
        cv2.rectangle(canvas, p1, p2, colour, thickness)
        label = f"{defect.defect_type} {defect.confidence:.2f} ({defect.severity})"
        _label(canvas, label, (p1[0], max(p1[1], 0)), colour, scale * 0.6, thickness)
    banner = f"{grade.grade.upper()}  {grade.confidence:.0%}"
    if not grade.quality.passed:
        banner += "  retake: " + ", ".join(grade.quality.flags)
    banner_h = round(36 * scale) + 8
    overlay = canvas.copy()
    cv2.rectangle(overlay, (0, 0), (width, banner_h), GRADE_COLOURS[grade.grade], -1)
    canvas = cv2.addWeighted(overlay, 0.8, canvas, 0.2, 0)
    cv2.putText(
        canvas,
        banner,
        (8, banner_h - 10),
        FONT,
        scale * 0.8,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    ok, png = cv2.imencode(".png", canvas)
    if not ok:  # pragma: no cover - OpenCV only fails here on out-of-memory
        raise RuntimeError("PNG encoding of the annotated photo failed")
    return png.tobytes()


def _label(
    canvas: np.ndarray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    thickness: int,
) -> None:
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    top = y - th - baseline - 4
    if top < 0:  # no room above the box: write inside it
        top = y
    cv2.rectangle(canvas, (x, top), (x + tw + 6, top + th + baseline + 4), colour, -1)
    cv2.putText(canvas, text, (x + 3, top + th + 2), FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)


# Occlusion sensitivity: how much "worse" the grader thinks the item is, per region.
GRADE_BADNESS = {"resell": 0.0, "refurbish": 0.5, "reject": 1.0}
OCCLUSION_GRID = 4


def occlusion_heatmap(
    *, grader: Predictor[GraderResult], image: np.ndarray, grid: int = OCCLUSION_GRID
) -> np.ndarray:
    """Where the grader sees damage: a grid x grid map in 0..1, one batched model call.

    Each cell is covered with the photo's mean colour in turn; the drop in expected badness
    (resell 0, refurbish 0.5, reject 1) says how much that region pushed the grade down.
    Cheap enough for on-demand use: grid*grid + 1 grader images in one batch.
    """
    height, width = image.shape[:2]
    fill = image.reshape(-1, image.shape[2]).mean(axis=0).astype(np.uint8)
    variants = [image]
    for row in range(grid):
        for col in range(grid):
            occluded = image.copy()
            y1, y2 = row * height // grid, (row + 1) * height // grid
            x1, x2 = col * width // grid, (col + 1) * width // grid
            occluded[y1:y2, x1:x2] = fill
            variants.append(occluded)
    results = grader.predict_batch(variants)
    badness = np.array(
        [sum(GRADE_BADNESS[g] * p for g, p in r.probabilities.items()) for r in results]
    )
    drop = np.clip(badness[0] - badness[1:], 0, None).reshape(grid, grid)
    peak = float(drop.max())
    return drop / peak if peak > 1e-6 else np.zeros((grid, grid))


def heatmap_overlay(*, image: np.ndarray, heat: np.ndarray) -> bytes:
    """The photo with a heatmap blended over it (red = where the grade came from), as PNG."""
    height, width = image.shape[:2]
    smooth = cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    levels = np.clip(smooth * 255, 0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    blended = cv2.addWeighted(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), 0.6, colours, 0.4, 0)
    ok, png = cv2.imencode(".png", blended)
    if not ok:  # pragma: no cover - OpenCV only fails here on out-of-memory
        raise RuntimeError("PNG encoding of the heatmap failed")
    return png.tobytes()
