"""GradingPipeline with the real fixture models: grading, batching, threads, reload, annotate."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from inspection.errors import PhotoRejected, ServiceUnavailable
from inspection.grading.explain import SEVERITY_COLOURS
from inspection.grading.model_card import load_card
from inspection.grading.pipeline import GradingPipeline, Upload
from inspection.grading.types import GRADES, Defect, IntakePhoto
from inspection.settings import PolicySettings
from tests.fixtures.images import make_photo_bytes
from tests.grading.conftest import settings_for

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "datasets" / "policy" / "returns-policy.yaml"


def _graded_count(source: str) -> float:
    return sum(
        REGISTRY.get_sample_value("inspection_photos_graded_total", {"source": source, "grade": g})
        or 0.0
        for g in GRADES
    )


def _photos(pipeline: GradingPipeline, n: int) -> list[IntakePhoto]:
    kinds = ("phone", "box", "shoe", "shirt", "mug")
    return [
        pipeline.intake(
            data=make_photo_bytes(seed=i, kind=kinds[i % 5], defect="crack" if i % 2 else None),
            content_type="image/jpeg",
            filename=f"{i}.jpg",
        )
        for i in range(n)
    ]


def test_grades_several_photos_of_one_item(
    grading_pipeline: GradingPipeline, models_dir: Path
) -> None:
    photos = _photos(grading_pipeline, 3)
    before = _graded_count("test")
    item = grading_pipeline.grade_photos(photos=photos, category="apparel", source="test")
    grader_card = load_card(models_dir / "grader")
    detector_card = load_card(models_dir / "detector")
    assert item.grade in GRADES
    assert item.model_version == grader_card.version_label
    assert item.detector_version == detector_card.version_label
    assert grading_pipeline.model_versions == {
        "grader": grader_card.version_label,
        "detector": detector_card.version_label,
    }
    assert len(item.photos) == 3
    for photo, graded in zip(photos, item.photos, strict=True):
        assert graded.facts == photo.facts
        assert sum(graded.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert graded.confidence == max(graded.probabilities.values())
        assert graded.embedding is not None and len(graded.embedding) > 8
        assert graded.latency_ms > 0
        assert graded.quality.passed
        assert "embedding" not in graded.model_dump()  # never sent to clients
    assert _graded_count("test") - before == 3


def test_batched_grades_equal_one_photo_at_a_time(grading_pipeline: GradingPipeline) -> None:
    photos = _photos(grading_pipeline, 4)
    together = grading_pipeline.grade_photos(photos=photos, category=None)
    for photo, graded in zip(photos, together.photos, strict=True):
        alone = grading_pipeline.grade_photos(photos=[photo], category=None).photos[0]
        assert alone.grade == graded.grade
        for g in GRADES:
            assert alone.probabilities[g] == pytest.approx(graded.probabilities[g], abs=1e-4)
        assert [d.defect_type for d in alone.defects] == [d.defect_type for d in graded.defects]


def test_concurrent_callers_get_their_own_results(models_dir: Path) -> None:
    # Micro-batching on: concurrent requests share model calls and must not mix up rows.
    pipeline = GradingPipeline.from_settings(
        settings=settings_for(models_dir, max_batch=8, batch_wait_ms=5.0)
    )
    photos = _photos(pipeline, 6)
    expected = [pipeline.grade_photos(photos=[p], category=None).photos[0] for p in photos]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(
                lambda p: pipeline.grade_photos(photos=[p], category=None).photos[0], photos * 2
            )
        )
    for got, want in zip(results, expected * 2, strict=True):
        assert got.facts.sha256 == want.facts.sha256
        for g in GRADES:
            assert got.probabilities[g] == pytest.approx(want.probabilities[g], abs=1e-4)
    pipeline.close()


def test_gradings_in_flight_are_capped_and_the_rest_wait_their_turn(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Memory under a burst is bounded by the cap, not by how many requests arrive at once.
    pipeline = GradingPipeline.from_settings(settings=settings_for(models_dir, concurrent_photos=2))
    photos = _photos(pipeline, 4)
    expected = {p.facts.sha256: pipeline.grade_photos(photos=[p], category=None) for p in photos}
    real = pipeline._grade_each
    active, peak = 0, 0
    lock = threading.Lock()

    def counted(**kwargs: object) -> object:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.02)  # long enough for all eight callers to pile up
            return real(**kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(pipeline, "_grade_each", counted)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda p: pipeline.grade_photos(photos=[p], category=None), photos * 2)
        )
    pipeline.close()
    assert peak == 2
    for photo, item in zip(photos * 2, results, strict=True):
        assert item.grade == expected[photo.facts.sha256].grade


def test_category_thresholds_come_from_the_policy(grading_pipeline: GradingPipeline) -> None:
    pipeline = GradingPipeline(
        settings=grading_pipeline.settings.__class__(), models=grading_pipeline._models
    )
    pipeline.settings.policy = PolicySettings(path=POLICY)
    strict = pipeline.review_thresholds(category="electronics")
    default = pipeline.review_thresholds(category="no-such-category")
    assert strict.min_confidence == 0.75 and default.min_confidence == 0.6
    photos = _photos(pipeline, 2)
    for category, thresholds in (("electronics", strict), (None, default)):
        item = pipeline.grade_photos(photos=photos, category=category)
        low = item.confidence < thresholds.min_confidence
        assert ("low_confidence" in item.reason_codes) is low
        if low:
            assert item.needs_review


def test_unusable_policy_falls_back_to_default_thresholds(
    grading_pipeline: GradingPipeline, tmp_path: Path
) -> None:
    pipeline = GradingPipeline(
        settings=grading_pipeline.settings.__class__(), models=grading_pipeline._models
    )
    pipeline.settings.policy = PolicySettings(path=tmp_path / "missing.yaml")
    assert pipeline.review_thresholds(category="electronics").min_confidence == 0.6


def test_without_detector_grading_still_works(models_dir: Path, tmp_path: Path) -> None:
    disabled = GradingPipeline.from_settings(
        settings=settings_for(models_dir, enable_detector=False)
    )
    only_grader = tmp_path / "models"
    shutil.copytree(models_dir / "grader", only_grader / "grader")
    missing = GradingPipeline.from_settings(settings=settings_for(only_grader))
    for pipeline in (disabled, missing):
        assert pipeline.ready and "detector" not in pipeline.model_versions
        item = pipeline.grade_photos(photos=_photos(pipeline, 1), category=None)
        assert item.detector_version is None and item.photos[0].defects == []
        pipeline.close()


def test_missing_models_make_the_pipeline_not_ready(tmp_path: Path, product_jpeg: bytes) -> None:
    pipeline = GradingPipeline.from_settings(settings=settings_for(tmp_path / "no-models"))
    assert not pipeline.ready and pipeline.model_versions == {}
    photo = pipeline.intake(data=product_jpeg, content_type="image/jpeg", filename="a.jpg")
    with pytest.raises(ServiceUnavailable) as caught:
        pipeline.grade_photos(photos=[photo], category=None)
    assert caught.value.status_code == 503
    assert "INSPECTION_MODEL_DIR" in (caught.value.hint or "")


def test_reload_swaps_models_and_keeps_old_ones_on_failure(
    models_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    pipeline = GradingPipeline.from_settings(settings=settings_for(root))
    photos = _photos(pipeline, 1)
    first = pipeline.grade_photos(photos=photos, category=None)
    assert pipeline.reload() == pipeline.model_versions
    again = pipeline.grade_photos(photos=photos, category=None)
    assert again.probabilities == first.probabilities
    shutil.rmtree(root / "grader")
    with pytest.raises(ServiceUnavailable):
        pipeline.reload()
    assert pipeline.ready  # the models loaded before keep serving
    assert pipeline.grade_photos(photos=photos, category=None).grade == first.grade
    pipeline.close()
    assert not pipeline.ready


def test_intake_many_names_the_bad_file(
    grading_pipeline: GradingPipeline, product_jpeg: bytes
) -> None:
    uploads = [
        Upload(data=product_jpeg, content_type="image/jpeg", filename="front.jpg"),
        Upload(data=b"", content_type="image/jpeg", filename="back.jpg"),
    ]
    with pytest.raises(PhotoRejected) as caught:
        grading_pipeline.intake_many(uploads=uploads)
    assert caught.value.message.startswith("photo 2 of 2: back.jpg is empty")
    assert caught.value.details["file_index"] == 2


def test_annotated_image_shows_boxes_and_banner(grading_pipeline: GradingPipeline) -> None:
    (photo,) = _photos(grading_pipeline, 1)
    graded = grading_pipeline.grade_photos(photos=[photo], category=None).photos[0]
    crack = Defect(
        defect_type="crack", confidence=0.91, box=(0.25, 0.5, 0.5, 0.75), area_fraction=0.06,
        severity="severe",
    )  # fmt: skip
    png = grading_pipeline.annotate(
        photo=photo, grade=graded.model_copy(update={"defects": [crack]})
    )
    assert png.startswith(b"\x89PNG")
    annotated = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert annotated.shape == photo.image.shape
    h, w = annotated.shape[:2]
    # The right edge of the box is drawn in the "severe" colour (BGR in explain.py).
    edge = annotated[int(0.6 * h), int(0.5 * w)]
    assert tuple(int(c) for c in edge[::-1]) == SEVERITY_COLOURS["severe"]
    # The banner covers the top rows; the middle of the photo is untouched.
    assert np.abs(annotated[2].astype(int) - photo.image[2].astype(int)).mean() > 20
    mid = (slice(int(0.8 * h), int(0.9 * h)), slice(int(0.8 * w), int(0.9 * w)))
    assert np.array_equal(annotated[mid], photo.image[mid])
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None


def test_cli_grades_files(models_dir: Path, tmp_path: Path, product_jpeg: bytes) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(product_jpeg)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    env = {**os.environ, "INSPECTION_MODEL_DIR": str(models_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "inspection.cli", "grade", str(good), str(bad), "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one file failed
    import json

    rows = json.loads(result.stdout)
    assert rows[0]["grade"] in GRADES and rows[0]["model_version"]
    assert "not an image" in rows[1]["error"] and rows[1]["hint"]


def test_intake_many_keeps_the_upload_order(grading_pipeline: GradingPipeline) -> None:
    datas = [make_photo_bytes(seed=s, width=320 + 16 * s, height=240) for s in range(5)]
    photos = grading_pipeline.intake_many(
        uploads=[
            Upload(data=d, content_type="image/jpeg", filename=f"{i}.jpg")
            for i, d in enumerate(datas)
        ]
    )
    assert [p.data for p in photos] == datas
    assert [p.facts.width for p in photos] == [320 + 16 * s for s in range(5)]


def test_grading_carries_on_through_reloads(models_dir: Path) -> None:
    pipeline = GradingPipeline.from_settings(
        settings=settings_for(models_dir, max_batch=8, batch_wait_ms=2.0)
    )
    photos = _photos(pipeline, 2)
    expected = pipeline.grade_photos(photos=photos, category=None).grade
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(pipeline.grade_photos, photos=photos, category=None) for _ in range(16)
        ]
        for _ in range(3):
            pipeline.reload()
        grades = [f.result().grade for f in futures]  # none failed with a 503
    assert grades == [expected] * 16
    pipeline.close()
