"""The exception queue's order: returns needing a person, most money at risk first.

Priority is an expected loss, value x risk, where risk joins the fraud score and the grade's
uncertainty as independent chances of a wrong automatic answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspection.decisions.types import ReviewCandidate

# Even a clean item waiting in review costs something (a customer waiting on a refund), so
# value alone still orders items that carry no measured risk.
RISK_FLOOR = 0.05
# Grade confidence nobody measured counts as a coin toss between two grades.
UNKNOWN_GRADE_CONFIDENCE = 0.5


def review_risk(item: ReviewCandidate) -> float:
    """Chance that an automatic answer on this item would be wrong, 0..1."""
    confidence = (
        item.grade_confidence if item.grade_confidence is not None else UNKNOWN_GRADE_CONFIDENCE
    )
    risk = 1.0 - (1.0 - item.fraud_score) * confidence
    return max(RISK_FLOOR, min(risk, 1.0))


def rank_for_review(items: Sequence[ReviewCandidate]) -> list[ReviewCandidate]:
    """Orders review candidates by value x risk (highest first), filling in `priority`."""
    scored = [
        item.model_copy(update={"priority": round(item.value_cents * review_risk(item), 2)})
        for item in items
    ]
    # Ties: the larger value first, then the older return (lower id) first.
    return sorted(scored, key=lambda c: (-c.priority, -c.value_cents, c.return_id))
