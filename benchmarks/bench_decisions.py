"""Decision-side timings: eligibility + fraud + decide, anomaly scoring, same-unit comparison.

Synthetic OpenCV product photos (960x720) for `compare_units`: the same unit re-photographed
(best case, settles on the first pair) and a different object (worst case, every pair compared).
Prints a Markdown table of median milliseconds.

    .venv/bin/python -m benchmarks.bench_decisions
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from inspection.decisions.anomaly import ANOMALY_MODEL_FILE, load_anomaly_model, order_features
from inspection.decisions.eligibility import check_eligibility
from inspection.decisions.engine import decide
from inspection.decisions.fraud import assess_fraud
from inspection.decisions.policy import load_policy
from inspection.grading.unit_match import compare_units
from tests.decisions import factories as f
from tests.decisions.product_photos import photograph, product_face

REPO = Path(__file__).resolve().parents[1]


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: imports, OpenCV kernels, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Runs each measurement and prints the table."""
    policy = load_policy(REPO / "datasets/policy/returns-policy.yaml")
    line, claim, customer = f.line(), f.claim(), f.customer()
    inputs = f.fraud_inputs()

    def decision() -> object:
        eligibility = check_eligibility(policy=policy, line=line, claim=claim)
        fraud = assess_fraud(policy=policy, inputs=inputs)
        return decide(
            policy=policy,
            stage="claim",
            line=line,
            eligibility=eligibility,
            fraud=fraud,
            grade=f.grade(),
            claim=claim,
            customer=customer,
        )

    model = load_anomaly_model(REPO / "models" / ANOMALY_MODEL_FILE)
    assert model is not None, "models/anomaly/anomaly.json is missing: run training train-anomaly"
    features = order_features(customer=customer, order=f.order(), claim=claim)
    rows = [features] * 1000

    same = product_face(1)
    customer_photos = [
        photograph(same, seed=i, angle_deg=5 * i, background=(170, 130, 90)) for i in range(4)
    ]
    same_station = [photograph(same, seed=10 + i, angle_deg=-7 * i) for i in range(4)]
    other_station = [
        photograph(product_face(2), seed=20 + i, angle_deg=-7 * i, brightness=0.7) for i in range(4)
    ]

    def compare(customer_side: list, station_side: list) -> Callable[[], object]:
        return lambda: compare_units(
            customer_images=customer_side,
            station_images=station_side,
            customer_embeddings=None,
            station_embeddings=None,
            customer_defects=[],
            station_defects=[],
            customer_grade=None,
            station_grade=None,
        )

    results = [
        ("eligibility + fraud + decide, one line", _median_ms(decision, 300)),
        ("anomaly score, one return", _median_ms(lambda: model.score(features), 300)),
        ("anomaly score, 1000 returns (matrix)", _median_ms(lambda: model.score_many(rows), 10)),
        (
            "compare_units 1x1, same unit",
            _median_ms(compare(customer_photos[:1], same_station[:1]), 10),
        ),
        ("compare_units 4x4, same unit", _median_ms(compare(customer_photos, same_station), 5)),
        (
            "compare_units 4x4, different object (worst case)",
            _median_ms(compare(customer_photos, other_station), 5),
        ),
    ]
    print("| measurement | median ms |")
    print("|---|---:|")
    for name, ms in results:
        print(f"| {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
