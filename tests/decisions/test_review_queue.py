"""The exception queue: value x risk, highest first, ties by value then age."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inspection.decisions.review_queue import RISK_FLOOR, rank_for_review, review_risk
from inspection.decisions.types import FraudSignal, ReviewCandidate


def _item(
    return_id: int, value: int, fraud: float = 0.0, confidence: float | None = 0.9
) -> ReviewCandidate:
    return ReviewCandidate(
        return_id=return_id,
        value_cents=value,
        currency="EUR",
        fraud_score=fraud,
        grade_confidence=confidence,
        reason_codes=["fraud_score_high"] if fraud else ["low_grade_confidence"],
        signals=[FraudSignal(reason_code="photo_reuse", weight=fraud, message="reused")]
        if fraud
        else [],
    )


def test_value_times_risk_orders_the_queue() -> None:
    items = [
        _item(1, 200_00, fraud=0.0, confidence=0.95),  # cheap, clean: 200.00 x 0.05
        _item(2, 900_00, fraud=0.6, confidence=0.9),  # expensive and risky
        _item(3, 150_00, fraud=0.9, confidence=0.9),  # risky but cheap
        _item(4, 2_000_00, fraud=0.0, confidence=0.98),  # very expensive, little risk
    ]
    ranked = rank_for_review(items)
    assert [c.return_id for c in ranked] == [2, 3, 4, 1]
    assert ranked[0].priority == round(900_00 * (1 - 0.4 * 0.9), 2)
    assert ranked[-1].priority == round(200_00 * RISK_FLOOR, 2)
    assert ranked[0].signals[0].reason_code == "photo_reuse"  # evidence travels with the item


def test_unknown_confidence_counts_as_uncertain() -> None:
    assert review_risk(_item(1, 100, confidence=None)) == 0.5
    assert review_risk(_item(1, 100, confidence=1.0)) == RISK_FLOOR


def test_ties_break_by_value_then_oldest() -> None:
    ranked = rank_for_review([_item(9, 0), _item(5, 0), _item(7, 10, fraud=0.0, confidence=1.0)])
    assert [c.return_id for c in ranked] == [7, 5, 9]


def test_empty_queue() -> None:
    assert rank_for_review([]) == []


@given(
    st.lists(
        st.builds(
            _item,
            return_id=st.integers(min_value=1, max_value=10_000),
            value=st.integers(min_value=0, max_value=10_000_000),
            fraud=st.floats(min_value=0, max_value=1),
            confidence=st.none() | st.floats(min_value=0, max_value=1),
        ),
        max_size=30,
    )
)
def test_ranking_is_a_sorted_permutation(items: list[ReviewCandidate]) -> None:
    ranked = rank_for_review(items)
    assert sorted(c.return_id for c in ranked) == sorted(c.return_id for c in items)
    priorities = [c.priority for c in ranked]
    assert priorities == sorted(priorities, reverse=True)
    assert all(c.priority <= c.value_cents for c in ranked)
