"""Procedural photos of returned goods with defects drawn at known places, types and severities.

Each photo is planned first (category, defects with severities, hence the grade by the rule in
`grade_for`), then rendered from its own seeded random stream, so a seed gives identical bytes
and any one photo can be re-rendered alone. Writes the dataset layout of `training.dataset`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspection.grading.types import GRADES
from training.dataset import (
    CATEGORIES,
    DEFECT_TYPES,
    SPLITS,
    LabelledPhoto,
    write_data_yaml,
    write_grades_csv,
    yolo_line,
)

log = logging.getLogger(__name__)

SEVERITIES = ("minor", "moderate", "severe")
# Share of photos per grade: resell dominates real returns, but the grader must see all three.
GRADE_SHARE = {"resell": 0.4, "refurbish": 0.3, "reject": 0.3}
SPLIT_SHARE = {"train": 0.8, "val": 0.1, "test": 0.1}
# Which defects a category can show, with relative frequency.
CATEGORY_DEFECTS: dict[str, dict[str, float]] = {
    "electronics": {"crack": 3, "scratch": 3, "dent": 1.5, "missing_part": 1, "wear": 1.5},
    "apparel": {"stain": 3, "tear": 3, "wear": 2},
    "shoes": {"stain": 2, "tear": 2, "wear": 3, "scratch": 1.5},
    "boxed": {"crushed_packaging": 3, "tear": 2, "stain": 1.5, "dent": 1.5},
    "hard_goods": {"crack": 2, "scratch": 2, "dent": 2, "missing_part": 1.5, "stain": 1},
}
# Defects that are never trivial: a missing part is at least moderate.
MIN_SEVERITY = {"missing_part": "moderate"}
# Defects gentle enough to appear (minor) on an item still fit to resell.
COSMETIC = {"scratch", "wear", "stain", "dent"}

Image = np.ndarray
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


@dataclass(frozen=True)
class PlannedDefect:
    """A defect to draw: its type and severity."""

    defect_type: str
    severity: str


@dataclass(frozen=True)
class PhotoPlan:
    """What one synthetic photo will show, decided before any pixel is drawn."""

    index: int
    category: str
    grade: str
    defects: tuple[PlannedDefect, ...]


@dataclass
class SynthSummary:
    """What `generate` wrote."""

    out_dir: Path
    count: int
    grades: dict[str, int]
    splits: dict[str, int]
    defects: dict[str, int]
    contact_sheet: Path | None = None
    data_yaml: Path | None = None
    files: list[Path] = field(default_factory=list)


def grade_for(defects: tuple[PlannedDefect, ...]) -> str:
    """The severity rule (documented in datasets/synthetic/DATASET_CARD.md).

    reject: any severe defect; refurbish: any moderate defect or three or more minor ones;
    resell: no defect, or at most two minor ones.
    """
    severities = [d.severity for d in defects]
    if "severe" in severities:
        return "reject"
    if "moderate" in severities or len(severities) >= 3:
        return "refurbish"
    return "resell"


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def plan_photo(*, index: int, seed: int) -> PhotoPlan:
    """Chooses the category, target grade and defects of photo `index` for `seed`."""
    rng = np.random.default_rng([seed, index, 1])
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    target = _pick(rng, GRADE_SHARE)
    allowed = CATEGORY_DEFECTS[category]
    cosmetic = {k: v for k, v in allowed.items() if k in COSMETIC}
    defects: list[PlannedDefect] = []
    if target == "resell":
        if rng.random() < 0.35 and cosmetic:
            for _ in range(int(rng.integers(1, 3))):
                defects.append(PlannedDefect(_pick(rng, cosmetic), "minor"))
    elif target == "refurbish":
        if rng.random() < 0.2 and cosmetic:
            for _ in range(3):
                defects.append(PlannedDefect(_pick(rng, cosmetic), "minor"))
        else:
            defects.append(PlannedDefect(_pick(rng, allowed), "moderate"))
            for _ in range(int(rng.integers(0, 2))):
                defects.append(PlannedDefect(_pick(rng, cosmetic or allowed), "minor"))
    else:
        defects.append(PlannedDefect(_pick(rng, allowed), "severe"))
        for _ in range(int(rng.integers(0, 2))):
            defects.append(PlannedDefect(_pick(rng, allowed), SEVERITIES[int(rng.integers(0, 2))]))
    fixed = tuple(
        PlannedDefect(d.defect_type, MIN_SEVERITY[d.defect_type])
        if d.defect_type in MIN_SEVERITY and d.severity == "minor"
        else d
        for d in defects
    )
    return PhotoPlan(index=index, category=category, grade=grade_for(fixed), defects=fixed)


# ---------------------------------------------------------------- textures and backgrounds


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], the base of wood, fabric folds and lighting blotches."""
    small = rng.random((max(2, cells), max(2, cells))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(rng: np.random.Generator, size: int) -> Image:
    kind = int(rng.integers(5))
    h = w = size
    if kind == 0:  # wooden table: streaks along x
        base = np.array([rng.uniform(90, 170), rng.uniform(60, 110), rng.uniform(30, 70)])
        streak = _smooth_noise(rng, 8, w, 40)
        grain = cv2.resize(streak, (w, h), interpolation=cv2.INTER_LINEAR)
        grain = grain * 0.6 + _smooth_noise(rng, h, w, 6) * 0.4
        img = base[None, None, :] * (0.75 + 0.5 * grain[..., None])
    elif kind == 1:  # grey concrete floor
        g = rng.uniform(110, 190)
        img = np.full((h, w, 3), g) * (0.85 + 0.3 * _smooth_noise(rng, h, w, 12)[..., None])
        img += rng.normal(0, 6, (h, w, 1))
    elif kind == 2:  # white inspection mat
        g = rng.uniform(200, 245)
        img = np.full((h, w, 3), g) * (0.93 + 0.1 * _smooth_noise(rng, h, w, 4)[..., None])
    elif kind == 3:  # dark conveyor belt with ribs
        g = rng.uniform(30, 70)
        img = np.full((h, w, 3), g, dtype=np.float64)
        period = int(rng.integers(10, 24))
        img[(np.arange(h) % period) < 2] += 18
    else:  # flattened cardboard or coloured cloth
        colour = rng.uniform(60, 220, 3)
        img = colour[None, None, :] * (0.85 + 0.3 * _smooth_noise(rng, h, w, 8)[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


def _rounded_rect_mask(h: int, w: int, rect: Rect, radius: int) -> np.ndarray:
    x1, y1, x2, y2 = rect
    m: np.ndarray = np.zeros((h, w), np.uint8)
    r = max(1, min(radius, (x2 - x1) // 2, (y2 - y1) // 2))
    cv2.rectangle(m, (x1 + r, y1), (x2 - r, y2), 255, -1)
    cv2.rectangle(m, (x1, y1 + r), (x2, y2 - r), 255, -1)
    for cx, cy in ((x1 + r, y1 + r), (x2 - r, y1 + r), (x1 + r, y2 - r), (x2 - r, y2 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m


def _fill(
    layer: Image, mask: np.ndarray, colour: np.ndarray, shade: np.ndarray | None = None
) -> None:
    sel = mask > 127
    if shade is None:
        layer[sel] = np.clip(colour, 0, 255)
    else:
        layer[sel] = np.clip(colour[None, :] * shade[sel][:, None], 0, 255)


# ---------------------------------------------------------------- products (canonical frame)


@dataclass
class Product:
    """A drawn product before placement: colours, opacity, and zones where defects go."""

    layer: Image  # float32 HxWx3
    alpha: np.ndarray  # uint8 HxW
    zones: dict[str, np.ndarray]  # name -> uint8 mask


def _electronics(rng: np.random.Generator, s: int) -> Product:
    layer = np.zeros((s, s, 3), np.float32)
    aspect = rng.choice([0.5, 0.48, 0.72])  # phones and tablets
    bh = int(s * rng.uniform(0.78, 0.9))
    bw = int(bh * aspect)
    x1, y1 = (s - bw) // 2, (s - bh) // 2
    body = (x1, y1, x1 + bw, y1 + bh)
    alpha = _rounded_rect_mask(s, s, body, int(bw * 0.12))
    frame = np.array(
        [(25, 25, 28), (190, 192, 196), (95, 97, 102), (235, 235, 232), (210, 185, 150)][
            int(rng.integers(5))
        ],
        np.float32,
    )
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    _fill(layer, alpha, frame, 0.9 + 0.2 * (xx / s))
    m = int(bw * rng.uniform(0.04, 0.07))
    top = int(bh * rng.uniform(0.05, 0.09))
    screen_rect = (x1 + m, y1 + top, x1 + bw - m, y1 + bh - top)
    screen = _rounded_rect_mask(s, s, screen_rect, int(bw * 0.06))
    if rng.random() < 0.7:  # screen off: near-black glass with a reflection band
        glass = np.array([12, 14, 18], np.float32) + rng.uniform(0, 10)
        refl = np.clip(
            1.0 + 2.5 * np.exp(-(((xx - yy * 0.6 - s * rng.uniform(0.1, 0.5)) / (s * 0.08)) ** 2)),
            1,
            4,
        )
        _fill(layer, screen, glass, refl)
    else:  # screen on: a wallpaper gradient
        c1, c2 = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
        t = ((yy - y1) / max(1, bh)).clip(0, 1)[..., None]
        wall = c1 * (1 - t) + c2 * t
        layer[screen > 127] = wall[screen > 127]
    cam = (x1 + bw // 2, y1 + top // 2)
    cv2.circle(layer, cam, max(2, top // 4), (8, 8, 10), -1, cv2.LINE_AA)
    # side buttons stick out of the frame: a missing one is a classic missing part
    bx = x1 + bw
    for k in range(int(rng.integers(1, 3))):
        by = y1 + int(bh * (0.22 + 0.12 * k))
        cv2.rectangle(
            layer,
            (bx - 1, by),
            (bx + 3, by + int(bh * 0.07)),
            tuple(float(c) * 0.8 for c in frame),
            -1,
        )
        cv2.rectangle(alpha, (bx - 1, by), (bx + 3, by + int(bh * 0.07)), 255, -1)
    edge = cv2.subtract(alpha, cv2.erode(alpha, np.ones((5, 5), np.uint8), iterations=2))
    return Product(layer, alpha, {"surface": screen, "body": alpha, "edge": edge})


def _apparel(rng: np.random.Generator, s: int) -> Product:
    layer = np.zeros((s, s, 3), np.float32)
    c = s / 2
    w = s * rng.uniform(0.34, 0.42)
    h = s * rng.uniform(0.7, 0.82)
    top, bot = c - h / 2, c + h / 2
    sl = s * rng.uniform(0.14, 0.2)
    pts = np.array(
        [
            (c - w * 0.45, top),
            (c - w * 0.15, top + h * 0.02),
            (c, top + h * 0.07),
            (c + w * 0.15, top + h * 0.02),
            (c + w * 0.45, top),
            (c + w / 2 + sl, top + h * 0.16),
            (c + w / 2 + sl * 0.6, top + h * 0.3),
            (c + w / 2, top + h * 0.24),
            (c + w / 2, bot),
            (c - w / 2, bot),
            (c - w / 2, top + h * 0.24),
            (c - w / 2 - sl * 0.6, top + h * 0.3),
            (c - w / 2 - sl, top + h * 0.16),
        ],
        np.int32,
    )
    alpha: np.ndarray = np.zeros((s, s), np.uint8)
    cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA)
    colour = rng.uniform(25, 235, 3).astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    period = rng.uniform(2.0, 3.5)
    weave = 0.96 + 0.04 * np.sin(xx * period) * np.sin(yy * period)
    folds = 0.8 + 0.35 * _smooth_noise(rng, s, s, 5)
    _fill(layer, alpha, colour, weave * folds)
    if rng.random() < 0.4:  # a printed chest logo
        r = int(w * 0.15)
        cv2.circle(
            layer,
            (int(c), int(top + h * 0.3)),
            r,
            tuple(float(v) for v in rng.uniform(0, 255, 3)),
            -1,
            cv2.LINE_AA,
        )
    body = np.zeros_like(alpha)
    cv2.rectangle(
        body,
        (int(c - w * 0.42), int(top + h * 0.15)),
        (int(c + w * 0.42), int(bot - h * 0.04)),
        255,
        -1,
    )
    return Product(layer, alpha, {"surface": body, "body": body, "edge": body})


def _shoes(rng: np.random.Generator, s: int) -> Product:
    layer = np.zeros((s, s, 3), np.float32)
    L = s * rng.uniform(0.7, 0.85)
    x0 = (s - L) / 2
    ybase = s * rng.uniform(0.62, 0.7)
    sole_h = s * rng.uniform(0.06, 0.09)
    upper = np.array(
        [
            (x0 + L * 0.02, ybase),
            (x0 + L * 0.0, ybase - s * 0.12),
            (x0 + L * 0.08, ybase - s * 0.28),
            (x0 + L * 0.3, ybase - s * 0.3),
            (x0 + L * 0.45, ybase - s * 0.2),
            (x0 + L * 0.75, ybase - s * 0.12),
            (x0 + L * 0.95, ybase - s * 0.07),
            (x0 + L, ybase),
        ],
        np.int32,
    )
    alpha: np.ndarray = np.zeros((s, s), np.uint8)
    up_mask = np.zeros_like(alpha)
    cv2.fillPoly(up_mask, [upper], 255, cv2.LINE_AA)
    sole = _rounded_rect_mask(
        s,
        s,
        (int(x0 - L * 0.01), int(ybase - 2), int(x0 + L * 1.01), int(ybase + sole_h)),
        int(sole_h / 2),
    )
    alpha = cv2.max(up_mask, sole)
    up_col = rng.uniform(20, 240, 3).astype(np.float32)
    sole_col = np.array(
        [(240, 240, 235), (30, 30, 30), (150, 110, 70)][int(rng.integers(3))], np.float32
    )
    shade = 0.85 + 0.3 * _smooth_noise(rng, s, s, 4)
    _fill(layer, up_mask, up_col, shade)
    _fill(layer, sole, sole_col)
    lace = (230.0, 230.0, 230.0) if up_col.mean() < 140 else (40.0, 40.0, 40.0)
    for k in range(5):  # laces across the instep
        x = int(x0 + L * (0.32 + 0.07 * k))
        y = int(ybase - s * (0.2 - 0.02 * k))
        cv2.line(layer, (x - 6, y - 4), (x + 6, y + 4), lace, 2, cv2.LINE_AA)
    cv2.line(
        layer,
        (int(x0 + L * 0.03), int(ybase - 3)),
        (int(x0 + L * 0.98), int(ybase - 3)),
        tuple(float(v) * 0.6 for v in up_col),
        1,
        cv2.LINE_AA,
    )
    return Product(layer, alpha, {"surface": up_mask, "body": alpha, "edge": sole})


def _boxed(rng: np.random.Generator, s: int) -> Product:
    layer = np.zeros((s, s, 3), np.float32)
    w = s * rng.uniform(0.45, 0.6)
    h = s * rng.uniform(0.35, 0.5)
    d = s * rng.uniform(0.12, 0.2)
    x1 = (s - w - d * 0.8) / 2
    y1 = (s - h - d * 0.6) / 2 + d * 0.6
    front = np.array([(x1, y1), (x1 + w, y1), (x1 + w, y1 + h), (x1, y1 + h)], np.int32)
    top = np.array(
        [(x1, y1), (x1 + d * 0.8, y1 - d * 0.6), (x1 + w + d * 0.8, y1 - d * 0.6), (x1 + w, y1)],
        np.int32,
    )
    side = np.array(
        [
            (x1 + w, y1),
            (x1 + w + d * 0.8, y1 - d * 0.6),
            (x1 + w + d * 0.8, y1 + h - d * 0.6),
            (x1 + w, y1 + h),
        ],
        np.int32,
    )
    if rng.random() < 0.6:  # brown corrugated cardboard
        colour = np.array(
            [rng.uniform(150, 200), rng.uniform(110, 150), rng.uniform(60, 95)], np.float32
        )
    else:  # white retail box
        colour = np.full(3, rng.uniform(200, 245), np.float32)
    masks = {}
    for name, poly, light in (("front", front, 1.0), ("top", top, 1.15), ("side", side, 0.75)):
        m: np.ndarray = np.zeros((s, s), np.uint8)
        cv2.fillPoly(m, [poly], 255, cv2.LINE_AA)
        masks[name] = m
        _fill(layer, m, colour * light, 0.95 + 0.1 * _smooth_noise(rng, s, s, 10))
    alpha = cv2.max(cv2.max(masks["front"], masks["top"]), masks["side"])
    # packing tape across the top and a shipping label on the front
    tape = np.zeros((s, s), np.uint8)
    tw = int(d * 0.25)
    mid = x1 + w / 2
    cv2.fillPoly(
        tape,
        [
            np.array(
                [
                    (mid - tw, y1),
                    (mid - tw + d * 0.8, y1 - d * 0.6),
                    (mid + tw + d * 0.8, y1 - d * 0.6),
                    (mid + tw, y1),
                ],
                np.int32,
            )
        ],
        255,
    )
    _fill(
        layer, tape, colour * 1.25 if rng.random() < 0.5 else np.array([200, 190, 160], np.float32)
    )
    lx, ly = int(x1 + w * rng.uniform(0.1, 0.45)), int(y1 + h * rng.uniform(0.15, 0.5))
    cv2.rectangle(layer, (lx, ly), (lx + int(w * 0.35), ly + int(h * 0.3)), (245, 245, 245), -1)
    for k in range(4):
        yk = ly + 5 + k * max(3, int(h * 0.05))
        cv2.line(layer, (lx + 4, yk), (lx + int(w * 0.3), yk), (40, 40, 40), 1)
    return Product(layer, alpha, {"surface": masks["front"], "body": alpha, "edge": masks["top"]})


def _hard_goods(rng: np.random.Generator, s: int) -> Product:
    layer = np.zeros((s, s, 3), np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    colour = rng.uniform(30, 235, 3).astype(np.float32)
    if rng.random() < 0.5:  # a small appliance: body, control panel, knobs, handle
        w, h = int(s * rng.uniform(0.5, 0.65)), int(s * rng.uniform(0.45, 0.6))
        x1, y1 = (s - w) // 2, (s - h) // 2 + int(s * 0.05)
        alpha = _rounded_rect_mask(s, s, (x1, y1, x1 + w, y1 + h), int(w * 0.08))
        _fill(layer, alpha, colour, 0.8 + 0.35 * (1 - yy / s))
        handle = np.zeros_like(alpha)
        cv2.ellipse(
            handle,
            (s // 2, y1),
            (int(w * 0.25), int(h * 0.2)),
            0,
            180,
            360,
            255,
            max(4, s // 40),
            cv2.LINE_AA,
        )
        _fill(layer, handle, colour * 0.6)
        alpha = cv2.max(alpha, handle)
        panel = _rounded_rect_mask(
            s, s, (x1 + w // 8, y1 + h // 6, x1 + w - w // 8, y1 + h // 2), 6
        )
        _fill(layer, panel, np.array([35, 35, 40], np.float32))
        for k in range(3):
            cv2.circle(
                layer,
                (x1 + w // 4 + k * w // 4, y1 + int(h * 0.72)),
                max(3, w // 16),
                (200, 200, 205),
                -1,
                cv2.LINE_AA,
            )
        body = _rounded_rect_mask(s, s, (x1, y1, x1 + w, y1 + h), int(w * 0.08))
        return Product(layer, alpha, {"surface": body, "body": body, "edge": body})
    # a ceramic bowl seen from above at an angle: rim ellipse and a shaded inside
    r = s * rng.uniform(0.3, 0.38)
    ry = r * rng.uniform(0.6, 0.9)
    alpha = np.zeros((s, s), np.uint8)
    cv2.ellipse(alpha, (s // 2, s // 2), (int(r), int(ry)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    _fill(layer, alpha, colour, 1.05 - 0.25 * ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (r * r))
    inner = np.zeros_like(alpha)
    cv2.ellipse(
        inner,
        (s // 2, s // 2 + int(ry * 0.05)),
        (int(r * 0.8), int(ry * 0.78)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    _fill(layer, inner, colour * 0.85, 0.8 + 0.3 * (yy - s / 2 + ry) / (2 * ry))
    return Product(
        layer, alpha, {"surface": inner, "body": alpha, "edge": cv2.subtract(alpha, inner)}
    )


PRODUCTS: dict[str, Callable[[np.random.Generator, int], Product]] = {
    "electronics": _electronics,
    "apparel": _apparel,
    "shoes": _shoes,
    "boxed": _boxed,
    "hard_goods": _hard_goods,
}


# ---------------------------------------------------------------- defects


SEVERITY_SCALE = {"minor": 0.35, "moderate": 0.65, "severe": 1.0}


def _point_in(rng: np.random.Generator, zone: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(zone > 127)
    if len(xs) == 0:
        h, w = zone.shape
        return w // 2, h // 2
    k = int(rng.integers(len(xs)))
    return int(xs[k]), int(ys[k])


def _contrast_colour(
    layer: Image, zone: np.ndarray, bright: float, dark: float
) -> tuple[float, float, float]:
    sel = zone > 127
    mean = float(layer[sel].mean()) if sel.any() else 128.0
    v = bright if mean < 110 else dark
    return (v, v, v)


def _zone_extent(zone: np.ndarray) -> float:
    ys, xs = np.nonzero(zone > 127)
    if len(xs) == 0:
        return zone.shape[0] / 3
    return float(max(xs.max() - xs.min(), ys.max() - ys.min()))


def _crack(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    """Radial, branching cracks from an impact point, as on a dropped screen."""
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    cx, cy = _point_in(rng, cv2.erode(zone, np.ones((9, 9), np.uint8)))
    colour = _contrast_colour(p.layer, zone, 235.0, 30.0)
    lines: np.ndarray = np.zeros((s, s), np.uint8)
    rays = {"minor": (1, 2), "moderate": (3, 5), "severe": (6, 10)}[sev]
    length = ext * k * rng.uniform(0.35, 0.6)

    def walk(x: float, y: float, ang: float, remaining: float, depth: int) -> None:
        step = max(3.0, ext * 0.03)
        while remaining > 0:
            ang += rng.normal(0, 0.25)
            nx, ny = x + step * math.cos(ang), y + step * math.sin(ang)
            cv2.line(lines, (int(x), int(y)), (int(nx), int(ny)), 255, 1, cv2.LINE_AA)
            x, y, remaining = nx, ny, remaining - step
            if depth < 2 and rng.random() < 0.12 * k:
                walk(
                    x,
                    y,
                    ang + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0),
                    remaining * 0.5,
                    depth + 1,
                )

    n = int(rng.integers(rays[0], rays[1] + 1))
    base = rng.uniform(0, 2 * math.pi)
    for r in range(n):
        walk(
            cx,
            cy,
            base + 2 * math.pi * r / n + rng.normal(0, 0.3),
            length * rng.uniform(0.6, 1.2),
            0,
        )
    if sev != "minor":  # a shattered spot at the impact point
        cv2.circle(lines, (cx, cy), max(2, int(ext * 0.02 * k * 2)), 255, -1, cv2.LINE_AA)
    lines = cv2.bitwise_and(lines, zone)
    a = (lines.astype(np.float32) / 255.0)[..., None]
    p.layer[:] = p.layer * (1 - a) + np.array(colour, np.float32) * a
    return lines


def _scratch(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    mask: np.ndarray = np.zeros((s, s), np.uint8)
    x, y = _point_in(rng, zone)
    ang = rng.uniform(0, math.pi)
    for _ in range(1 + int(k * 3 * rng.random())):
        length = ext * k * rng.uniform(0.25, 0.55)
        ox, oy = x + rng.normal(0, 4), y + rng.normal(0, 4)
        a2 = ang + rng.normal(0, 0.08)
        p2 = (int(ox + length * math.cos(a2)), int(oy + length * math.sin(a2)))
        cv2.line(mask, (int(ox), int(oy)), p2, 255, 1 + int(sev == "severe"), cv2.LINE_AA)
    mask = cv2.bitwise_and(mask, zone)
    colour = _contrast_colour(p.layer, zone, 190.0, 70.0)
    a = (mask.astype(np.float32) / 255.0 * 0.85)[..., None]
    p.layer[:] = p.layer * (1 - a) + np.array(colour, np.float32) * a
    return mask


def _dent(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    cx, cy = _point_in(rng, zone)
    rx = max(3.0, ext * k * rng.uniform(0.06, 0.12))
    ry = rx * rng.uniform(0.5, 1.0)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    ang = rng.uniform(0, math.pi)
    u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / rx
    v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / ry
    r2 = u * u + v * v
    inside = r2 < 1.0
    # a dent reads as a shadow on one side and a highlight on the other
    shade = 1.0 - 0.5 * k * u * np.exp(-r2) - 0.25 * k * np.exp(-r2 * 2)
    zsel = (zone > 127) & inside
    p.layer[zsel] = np.clip(p.layer[zsel] * shade[zsel][:, None] + 10 * k, 0, 255)
    mask = (zsel * 255).astype(np.uint8)
    edge = cv2.subtract(mask, cv2.erode(mask, np.ones((3, 3), np.uint8)))
    p.layer[edge > 0] *= 0.75
    return mask


def _blob(rng: np.random.Generator, s: int, cx: int, cy: int, radius: float) -> np.ndarray:
    m: np.ndarray = np.zeros((s, s), np.float32)
    for _ in range(int(rng.integers(4, 9))):
        ox, oy = rng.normal(0, radius * 0.45, 2)
        cv2.circle(
            m,
            (int(cx + ox), int(cy + oy)),
            max(2, int(radius * rng.uniform(0.35, 0.7))),
            1.0,
            -1,
            cv2.LINE_AA,
        )
    m = cv2.GaussianBlur(m, (0, 0), max(1.0, radius * 0.15))
    return (m > 0.5).astype(np.float32) * 0.6 + m.clip(0, 1) * 0.4


def _stain(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    cx, cy = _point_in(rng, zone)
    soft = _blob(rng, s, cx, cy, max(4.0, ext * k * rng.uniform(0.1, 0.2)))
    soft *= (zone > 127).astype(np.float32)
    colour = np.array(
        [(95, 60, 30), (60, 55, 45), (150, 130, 60), (120, 30, 30), (40, 40, 40)][
            int(rng.integers(5))
        ],
        np.float32,
    )
    opacity = rng.uniform(0.45, 0.75)
    a = (soft * opacity)[..., None]
    p.layer[:] = p.layer * (1 - a) + colour * a
    ring = cv2.subtract(
        (soft > 0.3).astype(np.uint8) * 255,
        cv2.erode((soft > 0.3).astype(np.uint8) * 255, np.ones((3, 3), np.uint8)),
    )
    p.layer[ring > 0] *= 0.8  # dried edge of a water or coffee stain
    return ((soft > 0.25) * 255).astype(np.uint8)


def _tear(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    cx, cy = _point_in(rng, cv2.erode(zone, np.ones((7, 7), np.uint8)))
    length = ext * k * rng.uniform(0.2, 0.4)
    ang = rng.uniform(0, math.pi)
    n = 12
    width = max(1.5, length * (0.08 if sev == "minor" else 0.22 * k))
    upper, lower = [], []
    for i in range(n + 1):
        t = i / n - 0.5
        bx, by = cx + t * length * math.cos(ang), cy + t * length * math.sin(ang)
        half = width * math.sin(math.pi * (t + 0.5)) * rng.uniform(0.5, 1.2)
        nx, ny = -math.sin(ang), math.cos(ang)
        upper.append((bx + nx * half, by + ny * half))
        lower.append((bx - nx * half, by - ny * half))
    poly = np.array(upper + lower[::-1], np.int32)
    mask: np.ndarray = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA)
    mask = cv2.bitwise_and(mask, zone)
    # the hole shows a dark inside; frayed edges are a lighter fringe
    fringe = cv2.subtract(cv2.dilate(mask, np.ones((3, 3), np.uint8)), mask)
    p.layer[fringe > 0] = np.clip(p.layer[fringe > 0] * 1.3 + 30, 0, 255)
    p.layer[mask > 127] = rng.uniform(10, 35)
    return cv2.max(mask, fringe)


def _missing_part(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    """Cuts a chunk out of the product's outline: a chipped corner, a broken-off piece."""
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    body = p.alpha
    edge = cv2.subtract(body, cv2.erode(body, np.ones((3, 3), np.uint8)))
    cx, cy = _point_in(rng, edge)
    r = max(4.0, _zone_extent(body) * k * rng.uniform(0.07, 0.13))
    pts = []
    for i in range(9):
        a = 2 * math.pi * i / 9
        rr = r * rng.uniform(0.6, 1.2)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    chunk = np.zeros((s, s), np.uint8)
    cv2.fillPoly(chunk, [np.array(pts, np.int32)], 255)
    removed = cv2.bitwise_and(chunk, body)
    # the broken edge shows the material inside: a darker rim around the gap
    rim = cv2.bitwise_and(
        cv2.subtract(cv2.dilate(removed, np.ones((5, 5), np.uint8)), removed), body
    )
    p.layer[rim > 0] *= 0.55
    p.alpha[removed > 0] = 0
    return cv2.max(removed, rim)


def _crushed(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    """A crushed box corner: pushed-in outline, creases and shading."""
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    body = p.alpha
    ys, xs = np.nonzero(body > 127)
    corners = [
        (xs.min(), ys[xs.argmin()]),
        (xs.max(), ys[xs.argmax()]),
        (xs[ys.argmin()], ys.min()),
        (xs[ys.argmax()], ys.max()),
    ]
    cx, cy = corners[int(rng.integers(len(corners)))]
    r = max(6.0, _zone_extent(body) * k * rng.uniform(0.15, 0.28))
    region: np.ndarray = np.zeros((s, s), np.uint8)
    cv2.circle(region, (int(cx), int(cy)), int(r), 255, -1, cv2.LINE_AA)
    region = cv2.bitwise_and(region, body)
    # pushed-in corner: cut a triangular bite out of the outline
    bite = np.zeros((s, s), np.uint8)
    ctr = np.array([s / 2, s / 2])
    dirv = ctr - np.array([cx, cy], float)
    dirv /= np.linalg.norm(dirv) + 1e-6
    tip = np.array([cx, cy]) + dirv * r * 0.35 * k
    perp = np.array([-dirv[1], dirv[0]])
    tri = np.array(
        [np.array([cx, cy]) + perp * r * 0.6, tip, np.array([cx, cy]) - perp * r * 0.6], np.int32
    )
    cv2.fillPoly(bite, [tri], 255)
    p.alpha[cv2.bitwise_and(bite, body) > 0] = 0
    sel = region > 127
    p.layer[sel] *= rng.uniform(0.7, 0.85)
    for _ in range(int(3 + 6 * k)):  # creases: dark fold with a lit edge beside it
        a = rng.uniform(0, 2 * math.pi)
        ln = r * rng.uniform(0.4, 1.0)
        p1 = (int(cx + rng.normal(0, r * 0.2)), int(cy + rng.normal(0, r * 0.2)))
        p2 = (int(p1[0] + ln * math.cos(a)), int(p1[1] + ln * math.sin(a)))
        crease: np.ndarray = np.zeros((s, s), np.uint8)
        cv2.line(crease, p1, p2, 255, 1, cv2.LINE_AA)
        crease = cv2.bitwise_and(crease, region)
        p.layer[crease > 0] *= 0.5
        lit = np.roll(crease, 1, axis=1)
        p.layer[(lit > 0) & (crease == 0)] = np.clip(
            p.layer[(lit > 0) & (crease == 0)] * 1.3, 0, 255
        )
    return cv2.max(region, cv2.bitwise_and(bite, body))


def _wear(rng: np.random.Generator, p: Product, zone: np.ndarray, sev: str) -> np.ndarray:
    """Scuffs and faded patches along edges: many small light marks."""
    s = zone.shape[0]
    k = SEVERITY_SCALE[sev]
    ext = _zone_extent(zone)
    cx, cy = _point_in(rng, zone)
    spread = max(5.0, ext * k * rng.uniform(0.1, 0.18))
    mask: np.ndarray = np.zeros((s, s), np.uint8)
    fade = _blob(rng, s, cx, cy, spread) * (zone > 127)
    a = (fade * 0.35 * (0.5 + k))[..., None]
    grey = p.layer.mean(axis=2, keepdims=True)
    p.layer[:] = p.layer * (1 - a) + (grey * 0.6 + 90) * a
    for _ in range(int(15 + 40 * k)):
        x, y = int(cx + rng.normal(0, spread * 0.6)), int(cy + rng.normal(0, spread * 0.6))
        if 0 <= x < s and 0 <= y < s and zone[y, x] > 127:
            d = rng.normal(0, 3, 2)
            cv2.line(mask, (x, y), (int(x + d[0]), int(y + d[1])), 255, 1, cv2.LINE_AA)
    colour = _contrast_colour(p.layer, zone, 170.0, 110.0)
    a2 = (mask.astype(np.float32) / 255.0 * 0.7)[..., None]
    p.layer[:] = p.layer * (1 - a2) + np.array(colour, np.float32) * a2
    return cv2.max(mask, ((fade > 0.3) * 255).astype(np.uint8))


DEFECT_DRAWERS: dict[str, Callable[[np.random.Generator, Product, np.ndarray, str], np.ndarray]] = {
    "crack": _crack,
    "scratch": _scratch,
    "dent": _dent,
    "stain": _stain,
    "tear": _tear,
    "missing_part": _missing_part,
    "crushed_packaging": _crushed,
    "wear": _wear,
}
# Where on the product each defect type lands.
DEFECT_ZONE = {
    "crack": "surface",
    "scratch": "surface",
    "dent": "edge",
    "stain": "surface",
    "tear": "surface",
    "missing_part": "body",
    "crushed_packaging": "body",
    "wear": "edge",
}


# ---------------------------------------------------------------- photo rendering


@dataclass(frozen=True)
class DrawnDefect:
    """A defect as it appears in the final photo: pixel box (x1, y1, x2, y2)."""

    defect_type: str
    severity: str
    box: tuple[float, float, float, float]


def _placement(rng: np.random.Generator, s: int) -> np.ndarray:
    """A homography: scale, rotation, shift and a little perspective (a hand-held camera)."""
    scale = rng.uniform(0.65, 1.0)
    ang = math.radians(rng.uniform(-25, 25))
    shift = rng.uniform(-0.08, 0.08, 2) * s
    c = s / 2
    src = np.array([[0, 0], [s, 0], [s, s], [0, s]], np.float32)
    dst = []
    for x, y in src:
        dx, dy = (x - c) * scale, (y - c) * scale
        rx = dx * math.cos(ang) - dy * math.sin(ang)
        ry = dx * math.sin(ang) + dy * math.cos(ang)
        dst.append((c + rx + shift[0], c + ry + shift[1]))
    dst_arr = np.array(dst, np.float32) + rng.uniform(-0.04, 0.04, (4, 2)).astype(np.float32) * s
    return cv2.getPerspectiveTransform(src, dst_arr)


def render_photo(*, plan: PhotoPlan, seed: int, size: int) -> tuple[Image, list[DrawnDefect]]:
    """Draws one photo (RGB uint8) and returns it with its defect boxes in pixels."""
    rng = np.random.default_rng([seed, plan.index, 2])
    s = size
    product = PRODUCTS[plan.category](rng, s)
    masks: list[tuple[PlannedDefect, np.ndarray]] = []
    for d in plan.defects:
        zone = product.zones.get(DEFECT_ZONE[d.defect_type], product.zones["body"])
        zone = cv2.bitwise_and(zone, product.alpha) if d.defect_type != "missing_part" else zone
        masks.append((d, DEFECT_DRAWERS[d.defect_type](rng, product, zone, d.severity)))
    H = _placement(rng, s)
    warp = lambda a, interp=cv2.INTER_LINEAR: cv2.warpPerspective(a, H, (s, s), flags=interp)  # noqa: E731
    obj = warp(product.layer)
    alpha = warp(product.alpha).astype(np.float32) / 255.0
    bg = _background(rng, s).astype(np.float32)
    # soft shadow under the product, offset away from the light
    off = rng.uniform(-0.03, 0.03, 2) * s + np.array([0.0, 0.02 * s])
    shadow = cv2.GaussianBlur(alpha, (0, 0), s * 0.02)
    shadow = cv2.warpAffine(shadow, np.array([[1, 0, off[0]], [0, 1, off[1]]], np.float32), (s, s))
    bg *= (1 - 0.45 * shadow)[..., None]
    img = bg * (1 - alpha[..., None]) + obj * alpha[..., None]
    # lighting: a gradient from a random side, colour temperature, exposure
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    la = rng.uniform(0, 2 * math.pi)
    grad = 1 + rng.uniform(0.05, 0.3) * ((xx - 0.5) * math.cos(la) + (yy - 0.5) * math.sin(la))
    tint = np.array([rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.92, 1.08)], np.float32)
    img = img * grad[..., None] * tint * rng.uniform(0.75, 1.2)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
    img += rng.normal(0, rng.uniform(0, 6), img.shape).astype(np.float32)
    photo = np.clip(img, 0, 255).astype(np.uint8)
    defects: list[DrawnDefect] = []
    for d, mask in masks:
        wm = warp(mask, cv2.INTER_NEAREST)
        ys, xs = np.nonzero(wm > 127)
        if len(xs) < 3:
            continue  # drawn outside the frame or fully covered
        defects.append(
            DrawnDefect(
                d.defect_type,
                d.severity,
                (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
            )
        )
    return photo, defects


def _split_plans(plans: list[PhotoPlan], seed: int) -> dict[int, str]:
    """Stratified by grade so every split sees every grade."""
    rng = np.random.default_rng([seed, 7])
    assignment: dict[int, str] = {}
    for grade in GRADES:
        idx = [p.index for p in plans if p.grade == grade]
        rng.shuffle(idx)
        n = len(idx)
        n_val = max(1, round(n * SPLIT_SHARE["val"])) if n >= 3 else 0
        n_test = max(1, round(n * SPLIT_SHARE["test"])) if n >= 3 else 0
        for j, i in enumerate(idx):
            assignment[i] = "val" if j < n_val else "test" if j < n_val + n_test else "train"
    return assignment


DEFECT_COLOURS = {
    "crack": (255, 60, 60),
    "scratch": (255, 200, 0),
    "dent": (0, 200, 255),
    "stain": (160, 80, 255),
    "tear": (255, 120, 0),
    "missing_part": (255, 0, 200),
    "crushed_packaging": (0, 255, 120),
    "wear": (200, 200, 200),
}
GRADE_COLOURS = {"resell": (40, 170, 60), "refurbish": (230, 160, 0), "reject": (210, 40, 40)}


def write_contact_sheet(
    *, photos: list[tuple[Image, str, str, list[DrawnDefect]]], path: Path, columns: int = 8
) -> Path:
    """A grid of photos with grade banner and defect boxes, to look at the data by eye."""
    tile = 200
    rows = math.ceil(len(photos) / columns)
    sheet = np.full((rows * (tile + 18), columns * tile, 3), 255, np.uint8)
    for k, (img, category, grade, defects) in enumerate(photos):
        scale = tile / img.shape[1]
        t = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        for d in defects:
            x1, y1, x2, y2 = (int(v * scale) for v in d.box)
            cv2.rectangle(t, (x1, y1), (x2, y2), DEFECT_COLOURS[d.defect_type], 1)
            cv2.putText(
                t,
                f"{d.defect_type[:5]}:{d.severity[:3]}",
                (x1, max(8, y1 - 2)),
                cv2.FONT_HERSHEY_PLAIN,
                0.7,
                DEFECT_COLOURS[d.defect_type],
                1,
            )
        r, c = divmod(k, columns)
        y0 = r * (tile + 18)
        sheet[y0 : y0 + tile, c * tile : (c + 1) * tile] = t
        cv2.rectangle(
            sheet,
            (c * tile, y0 + tile),
            ((c + 1) * tile - 1, y0 + tile + 17),
            GRADE_COLOURS[grade],
            -1,
        )
        cv2.putText(
            sheet,
            f"{grade} / {category}",
            (c * tile + 4, y0 + tile + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def generate(
    *,
    out_dir: Path,
    n: int,
    seed: int = 0,
    size: int = 320,
    jpeg_quality: tuple[int, int] = (60, 95),
    contact_sheet: bool = True,
    progress: bool = False,
) -> SynthSummary:
    """Generates `n` labelled synthetic photos of returned goods into `out_dir`."""
    if n < 1:
        raise ValueError("n must be at least 1")
    out_dir = Path(out_dir)
    for sub in SPLITS:
        (out_dir / "images" / sub).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / sub).mkdir(parents=True, exist_ok=True)
    plans = [plan_photo(index=i, seed=seed) for i in range(n)]
    splits = _split_plans(plans, seed)
    rows: list[LabelledPhoto] = []
    sheet: list[tuple[Image, str, str, list[DrawnDefect]]] = []
    defect_counts: Counter[str] = Counter()
    iterator: Iterable[PhotoPlan] = plans
    if progress:
        from tqdm import tqdm

        iterator = tqdm(plans, desc="synth", unit="photo")
    for plan in iterator:
        photo, defects = render_photo(plan=plan, seed=seed, size=size)
        split = splits[plan.index]
        stem = f"{plan.category}_{plan.index:06d}"
        img_path = out_dir / "images" / split / f"{stem}.jpg"
        q = int(
            np.random.default_rng([seed, plan.index, 3]).integers(
                jpeg_quality[0], jpeg_quality[1] + 1
            )
        )
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {img_path}")
        img_path.write_bytes(buf.tobytes())
        lines = [
            yolo_line(
                class_id=DEFECT_TYPES.index(d.defect_type), box=d.box, width=size, height=size
            )
            for d in defects
        ]
        (out_dir / "labels" / split / f"{stem}.txt").write_text(
            "\n".join(lines) + ("\n" if lines else ""), encoding="utf-8"
        )
        defect_counts.update(d.defect_type for d in defects)
        rows.append(
            LabelledPhoto(
                path=img_path,
                split=split,
                category=plan.category,
                grade=plan.grade,
                defects=tuple(f"{d.defect_type}:{d.severity}" for d in plan.defects),
            )
        )
        if contact_sheet and len(sheet) < 48:
            sheet.append((photo, plan.category, plan.grade, defects))
    write_grades_csv(dataset_dir=out_dir, rows=rows)
    data_yaml = write_data_yaml(dataset_dir=out_dir, names=DEFECT_TYPES)
    sheet_path = (
        write_contact_sheet(photos=sheet, path=out_dir / "contact_sheet.png") if sheet else None
    )
    summary = SynthSummary(
        out_dir=out_dir,
        count=n,
        grades=dict(Counter(r.grade for r in rows)),
        splits=dict(Counter(r.split for r in rows)),
        defects=dict(defect_counts),
        contact_sheet=sheet_path,
        data_yaml=data_yaml,
        files=[r.path for r in rows],
    )
    log.info("synthetic dataset: %s", summary.grades)
    return summary
