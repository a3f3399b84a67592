"""GradingPipeline: intake -> quality gate -> grader (+ detector) -> item grade, thread-safe.

One instance per process, built at start-up from settings; routes call it from a threadpool.
`reload()` swaps in freshly loaded models atomically, so requests in flight finish on the old ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.errors import InspectionError, InvalidInput, PhotoRejected, ServiceUnavailable
from inspection.grading.aggregate import combine_photo_grades
from inspection.grading.explain import annotate_photo, heatmap_overlay, occlusion_heatmap
from inspection.grading.intake import intake_photo
from inspection.grading.predictors import GraderResult, OnnxDefectDetector, OnnxGrader
from inspection.grading.quality import assess_quality
from inspection.grading.types import (
    Defect,
    IntakePhoto,
    ItemGrade,
    PhotoGrade,
    ReviewThresholds,
)
from inspection.observability import GRADING_LATENCY, PHOTOS_GRADED, PHOTOS_REJECTED
from inspection.settings import Settings

log = logging.getLogger(__name__)

# Shared by all requests: decoding is CPU-bound, so more threads than cores only queue.
_DECODE_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="decode")

MODELS_HINT = (
    "run the training pipeline (`make models`) to build models/grader and models/detector, "
    "or set INSPECTION_MODEL_DIR to a folder that holds them"
)


@dataclass(frozen=True)
class LoadedModels:
    """The models serving requests right now; replaced as a whole on reload."""

    grader: OnnxGrader
    detector: OnnxDefectDetector | None


@dataclass(frozen=True)
class Upload:
    """One uploaded file as received: bytes plus what the client said about them."""

    data: bytes
    content_type: str | None
    filename: str | None


class GradingPipeline:
    """Grades photos of one item with the bundled ONNX models."""

    def __init__(self, *, settings: Settings, models: LoadedModels | None) -> None:
        self.settings = settings
        self._models = models
        self._lock = threading.Lock()
        # Bounds model runs in flight, so memory stays flat under a burst of requests.
        self._turns = threading.BoundedSemaphore(settings.model.concurrent_photos)

    @classmethod
    def from_settings(cls, *, settings: Settings) -> GradingPipeline:
        """Loads the models named in settings; a missing grader leaves the pipeline not ready.

        The service still starts without models (so /readyz can say why); grading then
        answers 503 with a hint instead of crashing the process.
        """
        pipeline = cls(settings=settings, models=None)
        try:
            pipeline._models = pipeline._load()
        except ServiceUnavailable as exc:
            log.error("grading models not loaded: %s (%s)", exc.message, exc.hint)
        return pipeline

    def _load(self) -> LoadedModels:
        model = self.settings.model
        grader_dir = Path(model.dir) / model.grader
        if not grader_dir.is_dir():
            raise ServiceUnavailable(
                f"grader model folder {grader_dir} is missing", hint=MODELS_HINT
            )
        grader = OnnxGrader(model_dir=grader_dir, settings=model)
        detector = None
        detector_dir = Path(model.dir) / model.detector
        if not model.enable_detector:
            log.info("defect detector disabled (INSPECTION_MODEL_ENABLE_DETECTOR=false)")
        elif not detector_dir.is_dir():
            log.warning("no defect detector at %s: grading without defect boxes", detector_dir)
        else:
            detector = OnnxDefectDetector(model_dir=detector_dir, settings=model)
        return LoadedModels(grader=grader, detector=detector)

    @property
    def ready(self) -> bool:
        """True when the grader is loaded."""
        return self._models is not None

    @property
    def model_versions(self) -> dict[str, str]:
        """Loaded model ids, e.g. {"grader": "grader@3", "detector": "detector@2"}."""
        models = self._models
        if models is None:
            return {}
        versions = {"grader": models.grader.version}
        if models.detector is not None:
            versions["detector"] = models.detector.version
        return versions

    @property
    def providers(self) -> dict[str, str]:
        """The execution provider each loaded model runs on."""
        models = self._models
        if models is None:
            return {}
        found = {"grader": models.grader.provider}
        if models.detector is not None:
            found["detector"] = models.detector.provider
        return found

    def _require_models(self) -> LoadedModels:
        models = self._models
        if models is None:
            raise ServiceUnavailable("the grading models are not loaded", hint=MODELS_HINT)
        return models

    def reload(self) -> dict[str, str]:
        """Loads the models from disk again and swaps them in; on error the old ones stay."""
        with self._lock:
            old, self._models = self._models, self._load()
        if old is not None:
            old.grader.close()  # queued photos still run on the old model before it stops
        log.info("grading models reloaded: %s", self.model_versions)
        return self.model_versions

    def close(self) -> None:
        """Drops the model sessions (ONNX Runtime frees them with the last reference)."""
        with self._lock:
            old, self._models = self._models, None
        if old is not None:
            old.grader.close()

    def intake(self, *, data: bytes, content_type: str | None, filename: str | None) -> IntakePhoto:
        """Validates and decodes one upload (see `intake_photo`)."""
        try:
            return intake_photo(
                data=data,
                content_type=content_type,
                filename=filename,
                settings=self.settings.intake,
            )
        except InspectionError as exc:
            PHOTOS_REJECTED.labels(code=exc.code).inc()
            raise

    def intake_many(self, *, uploads: Sequence[Upload]) -> list[IntakePhoto]:
        """Intakes every upload, or none: the first bad file raises, naming its position.

        Several photos decode in parallel (the JPEG decoder releases the GIL), which halves
        a multi-photo request's intake time on two cores.
        """
        if len(uploads) > 1:
            outcomes = list(_DECODE_POOL.map(self._intake_or_refusal, uploads))
        else:
            outcomes = [self._intake_or_refusal(upload) for upload in uploads]
        photos = []
        for index, (upload, outcome) in enumerate(zip(uploads, outcomes, strict=True), start=1):
            if isinstance(outcome, PhotoRejected):
                details = {**outcome.details, "file_index": index, "filename": upload.filename}
                raise type(outcome)(
                    f"photo {index} of {len(uploads)}: {outcome.message}",
                    hint=outcome.hint,
                    details=details,
                ) from outcome
            photos.append(outcome)
        return photos

    def _intake_or_refusal(self, upload: Upload) -> IntakePhoto | PhotoRejected:
        try:
            return self.intake(
                data=upload.data, content_type=upload.content_type, filename=upload.filename
            )
        except PhotoRejected as exc:
            return exc

    def review_thresholds(self, *, category: str | None) -> ReviewThresholds:
        """The category's review thresholds from the policy file (defaults if it is unusable)."""
        from inspection.decisions.policy import load_policy

        try:
            return load_policy(self.settings.policy.path).review_thresholds(category)
        except InspectionError as exc:
            log.warning("policy unusable, default review thresholds apply: %s", exc.message)
            return ReviewThresholds()

    def grade_photos(
        self, *, photos: Sequence[IntakePhoto], category: str | None, source: str = "grade"
    ) -> ItemGrade:
        """Grades the photos of one item: quality gate, batched grader, detector, aggregation."""
        if not photos:
            raise InvalidInput("no photos to grade", hint="send at least one photo of the item")
        with self._turns:
            graded = self._grade_each(photos=photos, source=source)
        item = combine_photo_grades(
            photos=graded, thresholds=self.review_thresholds(category=category)
        )
        log.info(
            "graded %d photo(s): %s (%.2f)%s in %.1f ms",
            len(photos),
            item.grade,
            item.confidence,
            " needs review" if item.needs_review else "",
            sum(p.latency_ms for p in graded),
            extra={"ctx_reason_codes": item.reason_codes, "ctx_category": category},
        )
        return item

    def _grade_each(self, *, photos: Sequence[IntakePhoto], source: str) -> list[PhotoGrade]:
        """Quality gate, grader and detector for each photo (the part that holds a turn)."""
        models = self._require_models()
        qualities = []
        per_photo_ms = [0.0] * len(photos)
        for i, photo in enumerate(photos):
            t0 = time.perf_counter()
            qualities.append(
                assess_quality(
                    image=photo.image,
                    settings=self.settings.quality,
                    original_size=(photo.facts.width, photo.facts.height),
                )
            )
            per_photo_ms[i] += (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        images = [p.image for p in photos]
        try:
            grader_results = self._run_grader(models, images)
        except ServiceUnavailable:
            # A reload closed the grader this call picked up; the new one takes the photos.
            current = self._models
            if current is None or current is models:
                raise
            models = current
            grader_results = self._run_grader(models, images)
        grader_share = (time.perf_counter() - t0) * 1000 / len(photos)
        defects: list[list[Defect]] = []
        for i, photo in enumerate(photos):
            per_photo_ms[i] += grader_share
            if models.detector is None:
                defects.append([])
                continue
            t0 = time.perf_counter()
            defects.append(models.detector.predict(photo.image))
            per_photo_ms[i] += (time.perf_counter() - t0) * 1000
        graded = []
        for photo, quality, result, found, ms in zip(
            photos, qualities, grader_results, defects, per_photo_ms, strict=True
        ):
            grade = result.grade
            graded.append(
                PhotoGrade(
                    grade=grade,  # type: ignore[arg-type]
                    probabilities={g: round(p, 6) for g, p in result.probabilities.items()},
                    confidence=round(result.probabilities[grade], 6),
                    defects=found,
                    quality=quality,
                    facts=photo.facts,
                    model_version=models.grader.version,
                    detector_version=models.detector.version if models.detector else None,
                    latency_ms=round(ms, 2),
                    embedding=result.embedding,
                )
            )
            GRADING_LATENCY.observe(ms / 1000)
            PHOTOS_GRADED.labels(source=source, grade=grade).inc()
        return graded

    def _run_grader(self, models: LoadedModels, images: list[np.ndarray]) -> list[GraderResult]:
        step = self.settings.model.max_batch
        results: list[GraderResult] = []
        for i in range(0, len(images), step):
            results.extend(models.grader.predict_batch(images[i : i + step]))
        return results

    def annotate(self, *, photo: IntakePhoto, grade: PhotoGrade) -> bytes:
        """The photo with defect boxes, labels and the grade banner, as PNG bytes."""
        return annotate_photo(image=photo.image, grade=grade)

    def heatmap(self, *, photo: IntakePhoto) -> bytes:
        """Where the grader saw damage, blended over the photo as PNG (one batched call)."""
        models = self._require_models()
        with self._turns:
            heat = occlusion_heatmap(grader=models.grader, image=photo.image)
        return heatmap_overlay(image=photo.image, heat=heat)
