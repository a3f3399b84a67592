"""Same-unit comparison on real (synthetic, OpenCV-drawn) photos: a re-photographed product
matches itself under another angle and light, a different product does not, and the damage diff
separates defects shown at claim time from new ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.decisions.types import UnitComparison
from inspection.grading.unit_match import (
    EMBEDDING_DIFFERENT_OBJECT,
    MIN_INLIERS_SAME_UNIT,
    best_embedding_similarity,
    compare_units,
    same_unit_verdict,
)
from tests.decisions.product_photos import photograph, product_face


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    mug, kettle = product_face(1), product_face(2)
    return {
        # The customer's phone photo: warm table, slight angle.
        "customer": photograph(
            mug, seed=10, angle_deg=5, tilt=0.1, brightness=1.05, background=(170, 130, 90)
        ),
        # The station camera: grey bench, other angle, dimmer light.
        "station_same": photograph(mug, seed=11, angle_deg=-20, tilt=0.25, brightness=0.7),
        "station_same_bright": photograph(mug, seed=13, angle_deg=40, brightness=1.3),
        "station_other": photograph(kettle, seed=12, angle_deg=-20, tilt=0.25, brightness=0.7),
        "plain": np.full((600, 800, 3), 180, np.uint8),
    }


def _compare(
    customer: list[np.ndarray], station: list[np.ndarray], **over: object
) -> UnitComparison:
    args: dict[str, object] = {
        "customer_images": customer,
        "station_images": station,
        "customer_embeddings": None,
        "station_embeddings": None,
        "customer_defects": [],
        "station_defects": [],
        "customer_grade": "resell",
        "station_grade": "resell",
    }
    args.update(over)
    return compare_units(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("station", ["station_same", "station_same_bright"])
def test_same_unit_under_other_angle_and_light(photos: dict[str, np.ndarray], station: str) -> None:
    result = _compare([photos["customer"]], [photos[station]])
    assert result.same_unit_likely
    assert result.local_feature_matches >= 2 * MIN_INLIERS_SAME_UNIT


def test_different_object_is_not_the_same_unit(photos: dict[str, np.ndarray]) -> None:
    result = _compare([photos["customer"]], [photos["station_other"]])
    assert not result.same_unit_likely
    assert result.local_feature_matches < MIN_INLIERS_SAME_UNIT


def test_best_pair_wins_across_several_photos(photos: dict[str, np.ndarray]) -> None:
    result = _compare([photos["customer"]], [photos["station_other"], photos["station_same"]])
    assert result.same_unit_likely


def test_large_photos_are_downscaled_and_still_match(photos: dict[str, np.ndarray]) -> None:
    import cv2

    big = cv2.resize(photos["station_same"], None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    result = _compare([photos["customer"]], [big])
    assert result.same_unit_likely


def test_plain_surfaces_do_not_accuse_anyone(photos: dict[str, np.ndarray]) -> None:
    # No texture to match: without embeddings the comparison stays inconclusive (same unit).
    assert _compare([photos["plain"]], [photos["plain"]]).same_unit_likely
    # With embeddings that say "a different kind of object", it is a swap.
    result = _compare(
        [photos["plain"]],
        [photos["plain"]],
        customer_embeddings=[[1.0, 0.0, 0.0]],
        station_embeddings=[[0.0, 1.0, 0.0]],
    )
    assert not result.same_unit_likely
    assert result.embedding_similarity == 0.0


def test_missing_photos_on_one_side(photos: dict[str, np.ndarray]) -> None:
    result = _compare([], [photos["station_same"]])
    assert result.same_unit_likely
    assert result.local_feature_matches == 0


def test_embedding_similarity_is_best_cosine() -> None:
    assert best_embedding_similarity([[1, 0], [0, 1]], [[0, 2]]) == 1.0
    assert best_embedding_similarity([[1, 1]], [[1, 0]]) == pytest.approx(0.7071, abs=1e-4)
    assert best_embedding_similarity([], [[1, 0]]) is None
    with pytest.raises(ValueError, match="equal-length"):
        best_embedding_similarity([[1, 0, 0]], [[1, 0]])


VERDICTS = [
    # (inliers, conclusive, embedding similarity, same unit?)
    (MIN_INLIERS_SAME_UNIT, True, None, True),
    (MIN_INLIERS_SAME_UNIT, True, 0.1, True),  # a shared surface beats embeddings
    (MIN_INLIERS_SAME_UNIT - 1, True, None, False),
    (3, True, 0.95, False),  # embeddings never vouch for a unit keypoints reject
    (0, False, None, True),  # nothing to judge on: no accusation
    (0, False, EMBEDDING_DIFFERENT_OBJECT - 0.01, False),
    (0, False, EMBEDDING_DIFFERENT_OBJECT, True),
    (0, False, 0.9, True),
]


@pytest.mark.parametrize(("inliers", "conclusive", "similarity", "same"), VERDICTS)
def test_verdict_table(
    inliers: int, conclusive: bool, similarity: float | None, same: bool
) -> None:
    assert (
        same_unit_verdict(inliers=inliers, conclusive=conclusive, embedding_similarity=similarity)
        is same
    )


@pytest.mark.parametrize(
    ("at_claim", "at_station", "present", "new"),
    [
        (["scratch"], ["scratch"], ["scratch"], []),
        (["scratch"], ["scratch", "crack", "crack"], ["scratch"], ["crack"]),
        ([], ["dent", "stain"], [], ["dent", "stain"]),
        (["tear", "stain"], [], ["stain", "tear"], []),
    ],
)
def test_damage_diff(
    photos: dict[str, np.ndarray],
    at_claim: list[str],
    at_station: list[str],
    present: list[str],
    new: list[str],
) -> None:
    result = _compare(
        [photos["customer"]],
        [photos["station_same"]],
        customer_defects=at_claim,
        station_defects=at_station,
        station_grade="reject",
    )
    assert result.damage_present_at_claim == present
    assert result.damage_new_since_claim == new
    assert (result.customer_grade, result.station_grade) == ("resell", "reject")


def test_gray_rgba_and_unusable_images(photos: dict[str, np.ndarray]) -> None:
    import cv2

    gray = cv2.cvtColor(photos["customer"], cv2.COLOR_RGB2GRAY)
    station = photos["station_same"]
    rgba = np.dstack([station, np.full(station.shape[:2], 255, np.uint8)])
    assert _compare([gray], [rgba]).same_unit_likely
    # Empty and sliver images are skipped instead of crashing the comparison.
    empty = np.zeros((0, 0, 3), np.uint8)
    sliver = np.zeros((4, 500, 3), np.uint8)
    result = _compare([empty, sliver, photos["customer"]], [photos["station_other"]])
    assert not result.same_unit_likely
    assert _compare([empty], [station]).local_feature_matches == 0


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _rephotograph(image: np.ndarray, seed: int) -> np.ndarray:
    """The same surface under another perspective and light (a second camera at the station)."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    jitter = 0.08 * min(height, width)
    moved = (corners + rng.uniform(-jitter, jitter, corners.shape)).astype(np.float32)
    warped = cv2.warpPerspective(
        image,
        cv2.getPerspectiveTransform(corners, moved),
        (width, height),
        borderMode=cv2.BORDER_REFLECT,
    )
    lit = warped.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.normal(0, 3, warped.shape)
    return np.clip(lit, 0, 255).astype(np.uint8)


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", ["magnetic_tile/free", "neu_det/IMAGES"])
def test_real_photos_never_accuse_the_same_unit_nor_match_others(folder: str) -> None:
    import cv2

    every = sorted((SHARED_DATA / folder).glob("*.jpg"))
    if not every:
        pytest.skip(f"real photos not found in {SHARED_DATA / folder} (development data only)")
    # Spread over the folder: neighbouring NEU files are overlapping crops of one steel sheet
    # (the matcher rightly calls those the same surface), so compare photos far apart.
    files = every[:: max(1, len(every) // 12)][:12]
    images = []
    for path in files:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    for i, image in enumerate(images):
        again = _compare(
            [image], [_rephotograph(image, i)], customer_grade=None, station_grade=None
        )
        assert again.same_unit_likely, f"{files[i].name}: re-photographed surface flagged as swap"
        other = images[(i + len(images) // 2) % len(images)]
        different = _compare([image], [other])
        assert different.local_feature_matches < MIN_INLIERS_SAME_UNIT, files[i].name
