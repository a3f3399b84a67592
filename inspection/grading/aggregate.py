"""Item grade from several photos: worst case with confidence, reason codes, review routing.

A pure function of the per-photo grades and the category's review thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspection.grading.types import GRADES, ItemGrade, PhotoGrade, ReviewThresholds

# Reason codes (stable strings: the decision engine, QA queue and UI key on them).
LOW_CONFIDENCE = "low_confidence"
PHOTO_QUALITY = "photo_quality"
GRADE_DISAGREEMENT = "grade_disagreement"
DEFECT_GRADE_CONFLICT = "defect_grade_conflict"


def grade_rank(grade: str) -> int:
    """0 for resell, 1 for refurbish, 2 for reject."""
    return GRADES.index(grade)


def defect_reason(defect_type: str) -> str:
    """`crack` -> `crack_detected`."""
    return f"{defect_type}_detected"


def combine_photo_grades(
    *, photos: Sequence[PhotoGrade], thresholds: ReviewThresholds
) -> ItemGrade:
    """Combines per-photo grades into the item grade (worst case with confidence).

    Rule:
      1. Evidence = photos that passed the quality gate; if none did, all photos (the grade
         then rests on poor evidence: `photo_quality`, and review if `review_on_poor_quality`).
      2. Photos show different sides, so damage seen on one photo is damage on the item: the
         item takes the WORST grade among the evidence photos' own grades (their argmax).
      3. The deciding photo is the evidence photo with that grade and the highest probability
         for it; the item's confidence and probabilities are that photo's.
      4. `needs_review` when confidence < `min_confidence` (`low_confidence`), when the evidence
         photos' grades are more than `max_grade_spread` steps apart (`grade_disagreement`),
         when all photos failed the quality gate, or when the detector found a moderate or
         severe defect on an item graded resell (`defect_grade_conflict`).
      5. Every defect type seen adds `<type>_detected` (e.g. `crack_detected`), in order seen.

    Example:
        >>> item = combine_photo_grades(photos=[front, back], thresholds=ReviewThresholds())
        >>> item.grade, item.needs_review, item.reason_codes
        ('refurbish', False, ['scratch_detected'])
    """
    if not photos:
        raise ValueError("an item grade needs at least one photo")
    passed = [p for p in photos if p.quality.passed]
    evidence = passed or list(photos)
    worst = max(grade_rank(p.grade) for p in evidence)
    deciding = max(
        (p for p in evidence if grade_rank(p.grade) == worst),
        key=lambda p: p.probabilities.get(p.grade, p.confidence),
    )
    grade = GRADES[worst]
    confidence = float(deciding.probabilities.get(grade, deciding.confidence))

    reasons: list[str] = []
    for photo in photos:
        for defect in photo.defects:
            code = defect_reason(defect.defect_type)
            if code not in reasons:
                reasons.append(code)

    needs_review = False
    if confidence < thresholds.min_confidence:
        reasons.append(LOW_CONFIDENCE)
        needs_review = True
    spread = worst - min(grade_rank(p.grade) for p in evidence)
    if spread > thresholds.max_grade_spread:
        reasons.append(GRADE_DISAGREEMENT)
        needs_review = True
    if len(passed) < len(photos):
        # Informational when some photos were fine; decisive when none was.
        reasons.append(PHOTO_QUALITY)
        if not passed and thresholds.review_on_poor_quality:
            needs_review = True
    if grade == "resell" and any(d.severity != "minor" for p in evidence for d in p.defects):
        reasons.append(DEFECT_GRADE_CONFLICT)
        needs_review = True

    return ItemGrade(
        grade=grade,
        confidence=round(confidence, 6),
        probabilities=dict(deciding.probabilities),
        needs_review=needs_review,
        reason_codes=reasons,
        photos=list(photos),
        model_version=deciding.model_version,
        detector_version=deciding.detector_version,
    )
