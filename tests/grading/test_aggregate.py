"""Item grade from several photos: the worst-case-with-confidence rule, table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from inspection.grading.aggregate import combine_photo_grades
from inspection.grading.predictors import StaticGrader
from inspection.grading.types import (
    Defect,
    PhotoFacts,
    PhotoGrade,
    QualityReport,
    ReviewThresholds,
)

FACTS = PhotoFacts(
    sha256="0" * 64, phash="0" * 16, content_type="image/jpeg", format="JPEG",
    width=800, height=600, byte_size=1000,
)  # fmt: skip
GOOD = QualityReport(passed=True)
POOR = QualityReport(passed=False, flags=["blurry"], advice=["blurry: ..."])


def _probs(grade: str, p: float) -> dict[str, float]:
    rest = (1 - p) / 2
    return {g: (p if g == grade else rest) for g in ("resell", "refurbish", "reject")}


def _defect(kind: str, severity: str = "moderate") -> Defect:
    return Defect(
        defect_type=kind, confidence=0.8, box=(0.1, 0.1, 0.2, 0.2), area_fraction=0.01,
        severity=severity,  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass
class P:
    """A photo in a table row: its grade, probability of that grade, quality, defects."""

    grade: str
    p: float = 0.9
    ok: bool = True
    defects: list[str] = field(default_factory=list)
    severity: str = "moderate"


def _photo(spec: P) -> PhotoGrade:
    # Probabilities come through the fake grader: the same object the pipeline consumes.
    (result,) = StaticGrader([_probs(spec.grade, spec.p)]).predict_batch(
        [np.zeros((8, 8, 3), np.uint8)]
    )
    return PhotoGrade(
        grade=result.grade,  # type: ignore[arg-type]
        probabilities=result.probabilities,
        confidence=result.probabilities[result.grade],
        defects=[_defect(d, spec.severity) for d in spec.defects],
        quality=GOOD if spec.ok else POOR,
        facts=FACTS,
        model_version="static@1",
    )


CASES = [
    # (name, photos, thresholds, grade, confidence, needs_review, reason_codes)
    ("one clear resell", [P("resell", 0.95)], ReviewThresholds(), "resell", 0.95, False, []),
    (
        "worst photo wins",
        [P("resell", 0.9), P("refurbish", 0.8, defects=["scratch"])],
        ReviewThresholds(),
        "refurbish", 0.8, False, ["scratch_detected"],
    ),
    (
        "most confident photo of the worst grade decides",
        [P("reject", 0.7), P("reject", 0.95, defects=["crack"]), P("refurbish", 0.9)],
        ReviewThresholds(),
        "reject", 0.95, False, ["crack_detected"],
    ),
    (
        "low confidence goes to review",
        [P("refurbish", 0.5)],
        ReviewThresholds(min_confidence=0.6),
        "refurbish", 0.5, True, ["low_confidence"],
    ),
    (
        "per-category threshold: the same photo passes a laxer category",
        [P("refurbish", 0.5)],
        ReviewThresholds(min_confidence=0.4),
        "refurbish", 0.5, False, [],
    ),
    (
        "resell and reject on one item disagree",
        [P("resell", 0.9), P("reject", 0.9)],
        ReviewThresholds(max_grade_spread=1),
        "reject", 0.9, True, ["grade_disagreement"],
    ),
    (
        "a category may tolerate a two-step spread",
        [P("resell", 0.9), P("reject", 0.9)],
        ReviewThresholds(max_grade_spread=2),
        "reject", 0.9, False, [],
    ),
    (
        "poor photos are ignored while a good one exists",
        [P("reject", 0.9, ok=False), P("resell", 0.9)],
        ReviewThresholds(),
        "resell", 0.9, False, ["photo_quality"],
    ),
    (
        "all photos poor: graded, but reviewed",
        [P("refurbish", 0.9, ok=False), P("refurbish", 0.8, ok=False)],
        ReviewThresholds(),
        "refurbish", 0.9, True, ["photo_quality"],
    ),
    (
        "all photos poor, category trusts them anyway",
        [P("refurbish", 0.9, ok=False)],
        ReviewThresholds(review_on_poor_quality=False),
        "refurbish", 0.9, False, ["photo_quality"],
    ),
    (
        "resell with a moderate defect conflicts",
        [P("resell", 0.9, defects=["dent"])],
        ReviewThresholds(),
        "resell", 0.9, True, ["dent_detected", "defect_grade_conflict"],
    ),
    (
        "resell with a minor blemish is fine",
        [P("resell", 0.9, defects=["scratch"], severity="minor")],
        ReviewThresholds(),
        "resell", 0.9, False, ["scratch_detected"],
    ),
    (
        "defect reasons listed once each, in order seen",
        [P("reject", 0.9, defects=["crack", "scratch"]), P("reject", 0.8, defects=["crack"])],
        ReviewThresholds(),
        "reject", 0.9, False, ["crack_detected", "scratch_detected"],
    ),
    (
        "several reasons at once",
        [P("resell", 0.55), P("reject", 0.55, defects=["tear"])],
        ReviewThresholds(),
        "reject", 0.55, True, ["tear_detected", "low_confidence", "grade_disagreement"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("photos", "thresholds", "grade", "confidence", "needs_review", "reasons"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_combine_photo_grades(
    photos: list[P],
    thresholds: ReviewThresholds,
    grade: str,
    confidence: float,
    needs_review: bool,
    reasons: list[str],
) -> None:
    item = combine_photo_grades(photos=[_photo(p) for p in photos], thresholds=thresholds)
    assert item.grade == grade
    assert item.confidence == pytest.approx(confidence)
    assert item.needs_review is needs_review
    assert item.reason_codes == reasons
    assert len(item.photos) == len(photos)
    assert sum(item.probabilities.values()) == pytest.approx(1.0)
    assert item.model_version == "static@1"


def test_no_photos_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one photo"):
        combine_photo_grades(photos=[], thresholds=ReviewThresholds())


def test_item_grade_never_better_than_any_good_photo() -> None:
    rng = np.random.default_rng(0)
    grades = ("resell", "refurbish", "reject")
    for _ in range(200):
        specs = [
            P(str(rng.choice(grades)), float(rng.uniform(0.34, 1)), ok=bool(rng.random() > 0.3))
            for _ in range(int(rng.integers(1, 6)))
        ]
        item = combine_photo_grades(
            photos=[_photo(s) for s in specs], thresholds=ReviewThresholds()
        )
        evidence = [s for s in specs if s.ok] or specs
        assert grades.index(item.grade) == max(grades.index(s.grade) for s in evidence)
