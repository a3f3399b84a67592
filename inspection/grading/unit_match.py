"""Same unit? Compares the customer's photos of a return with the station's photos of what arrived.

Keypoints decide: ORB matches kept by a ratio test and verified by a RANSAC homography show the
same physical surface (print, texture, wear). Grader embeddings only speak when the photos are
too plain for keypoints. A damage diff separates defects shown at claim time from new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.decisions.types import UnitComparison
from inspection.grading.types import Grade

logger = logging.getLogger(__name__)

# Longest side for keypoint matching: enough detail for ORB, ~10 ms per pair on one core.
MATCH_MAX_SIDE = 640
# Smaller photos are enlarged to this before ORB (see `_to_gray`).
MATCH_MIN_SIDE = 400
ORB_FEATURES = 1000
# Lowe's ratio test: keep a match only if clearly better than the second best.
RATIO_TEST = 0.75
# Reprojection error (px at MATCH_MAX_SIDE) a RANSAC inlier may have.
RANSAC_REPROJECTION_PX = 5.0
# Fewer keypoints than this on either photo (plain, glossy or blurred surfaces) makes the local
# evidence inconclusive: we then rely on embeddings rather than call it a different object.
MIN_KEYPOINTS = 80
# RANSAC inliers of the best photo pair that mean "the same physical surface". A re-photographed
# unit under another angle and light keeps dozens to hundreds; two different objects give a
# chance consensus of 4-12 points (the homography needs only 4), so 25 leaves margin both ways.
MIN_INLIERS_SAME_UNIT = 25
# Grader embeddings are trained to grade, not to identify: on synthetic product photos (8
# products x 3 views, trial 96 px grader) same-product pairs scored 0.45-0.83 and different
# products 0.39-0.90, so embeddings cannot confirm a unit and never override keypoints. Only a
# similarity below every same-product pair seen (0.45), e.g. a plain box vs a printed product
# (0.06), says "a different kind of object" when keypoints cannot judge.
EMBEDDING_DIFFERENT_OBJECT = 0.3
# Photos per side compared pairwise; more only repeats views and costs time.
MAX_PHOTOS_PER_SIDE = 4
# A pair this far above the same-unit bar settles the question: stop comparing further pairs.
SETTLED_INLIERS = 4 * MIN_INLIERS_SAME_UNIT


@dataclass(frozen=True)
class _Keypoints:
    points: np.ndarray  # (n, 2) float32 pixel coordinates
    descriptors: np.ndarray | None


def _to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale at most MATCH_MAX_SIDE, contrast-equalised so lighting changes matter less."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    height, width = gray.shape[:2]
    scale = MATCH_MAX_SIDE / max(height, width)
    if scale < 1:
        gray = cv2.resize(
            gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
    elif max(height, width) < MATCH_MIN_SIDE:
        # ORB skips a 31 px border and needs pyramid levels: small photos get too few keypoints.
        up = MATCH_MIN_SIDE / max(height, width)
        gray = cv2.resize(
            gray, (round(width * up), round(height * up)), interpolation=cv2.INTER_CUBIC
        )
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)


def _keypoints(image: np.ndarray, orb: cv2.ORB) -> _Keypoints:
    keypoints, descriptors = orb.detectAndCompute(_to_gray(image), None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return _Keypoints(points=points, descriptors=descriptors)


def _ransac_inliers(a: _Keypoints, b: _Keypoints, matcher: cv2.BFMatcher) -> int:
    """RANSAC-consistent ratio-test matches between two photos."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 2 or len(b.points) < 2:
        return 0
    pairs = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
    if len(good) < 4:  # a homography needs four points
        return 0
    src = a.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = b.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_REPROJECTION_PX)
    return int(mask.sum()) if mask is not None else 0


def _usable(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    # An empty or sliver image (a failed decode upstream) has nothing to match; skip it.
    kept = [i for i in images if i.ndim in (2, 3) and min(i.shape[:2]) >= 16]
    if len(kept) < len(images):
        logger.warning("unit comparison skipped %d unusable image(s)", len(images) - len(kept))
    return kept


def best_pair_inliers(
    customer_images: Sequence[np.ndarray], station_images: Sequence[np.ndarray]
) -> tuple[int, bool]:
    """Inliers of the best customer/station photo pair, and whether the evidence is conclusive."""
    orb = cv2.ORB.create(nfeatures=ORB_FEATURES)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    customer = [_keypoints(i, orb) for i in _usable(customer_images)[:MAX_PHOTOS_PER_SIDE]]
    station = [_keypoints(i, orb) for i in _usable(station_images)[:MAX_PHOTOS_PER_SIDE]]
    best, conclusive = 0, False
    for a in customer:
        for b in station:
            if min(len(a.points), len(b.points)) >= MIN_KEYPOINTS:
                conclusive = True
            best = max(best, _ransac_inliers(a, b, matcher))
            if best >= SETTLED_INLIERS:
                return best, True
    return best, conclusive or best >= MIN_INLIERS_SAME_UNIT


def best_embedding_similarity(
    customer: Sequence[Sequence[float]], station: Sequence[Sequence[float]]
) -> float | None:
    """Highest cosine similarity between any customer and any station embedding."""
    if not customer or not station:
        return None
    a = np.asarray(customer, dtype=np.float64)
    b = np.asarray(station, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings must be equal-length vectors, got shapes {a.shape} and {b.shape}"
        )
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return round(float(np.max(a @ b.T)), 4)


def same_unit_verdict(
    *, inliers: int, conclusive: bool, embedding_similarity: float | None
) -> bool:
    """Whether the station photos likely show the unit the customer photographed."""
    if inliers >= MIN_INLIERS_SAME_UNIT:
        return True  # the same physical surface: strongest evidence there is
    if conclusive:
        return False  # textured photos on both sides, and no shared surface
    # Too plain for keypoints: only a clearly different kind of object counts as a swap. With
    # less to go on we accuse no one; a same-model swap of a plain product still shows up in
    # the damage diff (new damage) and the grade comparison.
    return embedding_similarity is None or embedding_similarity >= EMBEDDING_DIFFERENT_OBJECT


def compare_units(
    *,
    customer_images: Sequence[np.ndarray],
    station_images: Sequence[np.ndarray],
    customer_embeddings: Sequence[Sequence[float]] | None,
    station_embeddings: Sequence[Sequence[float]] | None,
    customer_defects: Sequence[str],
    station_defects: Sequence[str],
    customer_grade: Grade | None,
    station_grade: Grade | None,
) -> UnitComparison:
    """Compares customer and station photos of one returned item (RGB uint8 images)."""
    similarity = best_embedding_similarity(customer_embeddings or [], station_embeddings or [])
    if customer_images and station_images:
        inliers, conclusive = best_pair_inliers(customer_images, station_images)
    else:
        inliers, conclusive = 0, False
    same = same_unit_verdict(
        inliers=inliers, conclusive=conclusive, embedding_similarity=similarity
    )
    at_claim = sorted({d for d in customer_defects if d})
    new = sorted({d for d in station_defects if d} - set(at_claim))
    logger.debug(
        "unit comparison: inliers=%d conclusive=%s similarity=%s same=%s new=%s",
        inliers,
        conclusive,
        similarity,
        same,
        new,
    )
    return UnitComparison(
        embedding_similarity=similarity,
        local_feature_matches=inliers,
        same_unit_likely=same,
        customer_grade=customer_grade,
        station_grade=station_grade,
        damage_present_at_claim=at_claim,
        damage_new_since_claim=new,
    )
