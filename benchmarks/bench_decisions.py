"""Decision-side timings: eligibility + fraud + decide, anomaly scoring, same-unit comparison.

Synthetic OpenCV product photos (960x720) for `compare_units`: the same unit re-photographed
(best case, settles on the first pair) and a different object (worst case, every pair compared).
Prints a Markdown table of median milliseconds, then (when ../shared/data exists) how the
same-unit matcher separates real photos: each photo vs a re-photographed copy of itself
(perspective + light) and vs a distinct photo of the same folder.

    .venv/bin/python -m benchmarks.bench_decisions
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from inspection.decisions.anomaly import ANOMALY_MODEL_FILE, load_anomaly_model, order_features
from inspection.decisions.eligibility import check_eligibility
from inspection.decisions.engine import decide
from inspection.decisions.fraud import assess_fraud
from inspection.decisions.policy import load_policy
from inspection.grading.unit_match import MIN_INLIERS_SAME_UNIT, best_pair_inliers, compare_units
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
    real_photo_separation()


def _rephotograph(image: np.ndarray, seed: int) -> np.ndarray:
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


def real_photo_separation(per_folder: int = 40) -> None:
    """RANSAC inliers on real photos (development data, never committed)."""
    shared = REPO.parent / "shared" / "data"
    folders = ["magnetic_tile/free", "neu_det/IMAGES"]
    if not all((shared / f).is_dir() for f in folders):
        print(f"\n(real-photo section skipped: {shared} not found)")
        return
    print(f"\nSame-unit bar: {MIN_INLIERS_SAME_UNIT} RANSAC inliers.\n")
    print(
        "| photos | re-photographed: median / min inliers | recognised | inconclusive "
        "| distinct photos: max inliers | distinct called same |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for folder in folders:
        every = sorted((shared / folder).glob("*.jpg"))
        # Spread out: neighbouring NEU files are overlapping crops of one sheet.
        files = every[:: max(1, len(every) // per_folder)][:per_folder]
        images = []
        for path in files:
            bgr = cv2.imread(str(path))
            if bgr is not None:
                images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        same, undecided, distinct = [], 0, []
        for i, image in enumerate(images):
            inliers, conclusive = best_pair_inliers([image], [_rephotograph(image, i)])
            same.append(inliers)
            undecided += not conclusive
            other = images[(i + len(images) // 2) % len(images)]
            distinct.append(best_pair_inliers([image], [other])[0])
        recognised = sum(s >= MIN_INLIERS_SAME_UNIT for s in same)
        wrong = sum(d >= MIN_INLIERS_SAME_UNIT for d in distinct)
        print(
            f"| {folder} ({len(images)}) | {statistics.median(same):.0f} / {min(same)} "
            f"| {recognised}/{len(images)} | {undecided}/{len(images)} | {max(distinct)} "
            f"| {wrong}/{len(images)} |"
        )


if __name__ == "__main__":
    main()
