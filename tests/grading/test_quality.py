"""Quality gate: each bad photo gets its flag and advice; good photos of every kind pass."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.grading.intake import intake_photo
from inspection.grading.quality import assess_quality
from inspection.settings import IntakeSettings, QualitySettings
from tests.fixtures.images import PRODUCT_KINDS, make_product_image

SETTINGS = QualitySettings()


def _quality(image: np.ndarray, original_size: tuple[int, int] | None = None):  # type: ignore[no-untyped-def]
    return assess_quality(image=image, settings=SETTINGS, original_size=original_size)


@pytest.mark.parametrize("kind", PRODUCT_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_good_photos_pass(kind: str, seed: int) -> None:
    report = _quality(make_product_image(kind=kind, seed=seed))
    assert report.passed, (kind, seed, report.flags, report.metrics)
    assert report.flags == [] and report.advice == []


@pytest.mark.parametrize(
    ("fixture", "flag", "advice_words"),
    [
        ("dark_jpeg", "too_dark", "turn on a light"),
        ("bright_jpeg", "too_bright", "flash"),
        ("blurry_jpeg", "blurry", "hold the camera steady"),
        ("tiny_jpeg", "too_small", "200x150"),
        ("empty_background_jpeg", "no_product", "middle of the frame"),
    ],
)
def test_bad_photos_are_flagged_with_advice(
    request: pytest.FixtureRequest, fixture: str, flag: str, advice_words: str
) -> None:
    data = request.getfixturevalue(fixture)
    photo = intake_photo(data=data, content_type=None, filename=None, settings=IntakeSettings())
    report = _quality(photo.image, (photo.facts.width, photo.facts.height))
    assert not report.passed
    assert flag in report.flags, report.metrics
    advice = report.advice[report.flags.index(flag)]
    assert advice_words in advice
    assert len(report.advice) == len(report.flags)


def test_too_small_is_judged_on_the_original_size() -> None:
    image = make_product_image(width=640, height=480)
    assert "too_small" not in _quality(image, (4000, 3000)).flags
    assert "too_small" in _quality(image, (300, 200)).flags


def test_metrics_are_reported() -> None:
    report = _quality(make_product_image())
    for key in ("sharpness", "luminance", "dark_fraction", "product_fraction"):
        assert key in report.metrics
    assert 0 < report.metrics["product_fraction"] <= 1


def test_close_up_of_an_item_is_not_called_empty() -> None:
    # The box fills most of the frame and runs over its left, top and bottom edges.
    full = make_product_image(width=1600, height=1200, kind="box", seed=1)
    x1, y1 = 0.3, 0.35  # the box of seed 1 spans x 0.13-0.54, y 0.29-0.85
    crop = full[int(1200 * y1) : int(1200 * y1) + 300, int(1600 * x1) : int(1600 * x1) + 400]
    assert "no_product" not in _quality(crop).flags


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((300, 300, 3), np.uint8),
        np.full((300, 300, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8),
        np.zeros((17, 4000, 3), np.uint8),
    ],
)
def test_never_raises_on_extreme_images(image: np.ndarray) -> None:
    report = _quality(image)
    assert isinstance(report.passed, bool)
    assert all(np.isfinite(v) for v in report.metrics.values()), report.metrics
