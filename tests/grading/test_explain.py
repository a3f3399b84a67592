"""Explanations: the occlusion heatmap points at the region that drives the grade."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from inspection.grading.explain import heatmap_overlay, occlusion_heatmap
from inspection.grading.pipeline import GradingPipeline
from inspection.grading.predictors import GraderResult, Predictor, PreparedBatch
from tests.fixtures.images import make_photo_bytes


class BrightSpotGrader(Predictor[GraderResult]):
    """A stand-in grader whose reject probability is the brightness of one known region."""

    def pre_process(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        return PreparedBatch(tensor=np.stack([im[100:150, 250:300].mean() / 255 for im in images]))

    def forward(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        return {"reject": batch.tensor}

    def post_process(
        self, outputs: dict[str, np.ndarray], batch: PreparedBatch
    ) -> list[GraderResult]:
        return [
            GraderResult(
                probabilities={"resell": 1 - float(p), "refurbish": 0.0, "reject": float(p)},
                logits=[0.0, 0.0, 0.0],
                embedding=None,
            )
            for p in outputs["reject"]
        ]


def test_heatmap_peaks_where_the_grade_comes_from() -> None:
    image = np.full((400, 400, 3), 40, np.uint8)
    image[100:150, 250:300] = 255  # the "damage": row 1, column 2 of a 4x4 grid
    heat = occlusion_heatmap(grader=BrightSpotGrader(), image=image, grid=4)
    assert heat.shape == (4, 4)
    assert heat.max() == 1.0 and np.unravel_index(heat.argmax(), heat.shape) == (1, 2)
    assert heat.sum() == 1.0  # no other cell matters


def test_heatmap_of_a_clean_photo_is_flat() -> None:
    image = np.full((400, 400, 3), 40, np.uint8)
    heat = occlusion_heatmap(grader=BrightSpotGrader(), image=image)
    assert not heat.any()


def test_heatmap_with_the_real_grader(grading_pipeline: GradingPipeline) -> None:
    photo = grading_pipeline.intake(
        data=make_photo_bytes(defect="crack", seed=3), content_type="image/jpeg", filename="c.jpg"
    )
    png = grading_pipeline.heatmap(photo=photo)
    overlay = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert overlay.shape == photo.image.shape
    assert not np.array_equal(overlay, photo.image)  # the colour map is blended in
    assert grading_pipeline._models is not None
    heat = occlusion_heatmap(grader=grading_pipeline._models.grader, image=photo.image)
    assert heat.shape == (4, 4) and heat.min() >= 0 and heat.max() <= 1


def test_overlay_keeps_the_photo_size() -> None:
    image = np.zeros((120, 200, 3), np.uint8)
    png = heatmap_overlay(image=image, heat=np.eye(4))
    assert Image.open(io.BytesIO(png)).size == (200, 120)
