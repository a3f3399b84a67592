"""Evaluation writes its report and plots through the service's predictors; promotion versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspection.grading.model_card import file_sha256, load_card
from training.evaluate import detection_map50, evaluate_model
from training.promote import promote

pytestmark = pytest.mark.train


def test_grader_evaluation_writes_json_and_plots(
    grader_model_dir: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    report = evaluate_model(
        model_dir=grader_model_dir, data_dirs=[synthetic_dataset], out_dir=tmp_path, split="test",
        progress=False,
    )  # fmt: skip
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["model"] == "grader@1" and saved["count"] == report["count"] > 0
    for key in ("accuracy", "macro_f1", "resell_auroc", "ece", "per_grade", "confusion_matrix"):
        assert key in saved
    assert np.asarray(saved["confusion_matrix"]).sum() == saved["count"]
    assert set(saved["per_grade"]) == {"resell", "refurbish", "reject"}
    for png in ("confusion_matrix.png", "reliability.png", "pr_curve.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detector_evaluation_reports_map50(
    detector_model_dir: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    report = evaluate_model(
        model_dir=detector_model_dir, data_dirs=[synthetic_dataset], out_dir=tmp_path,
        split="val", progress=False,
    )  # fmt: skip
    assert 0.0 <= report["map50"] <= 1.0
    assert sum(report["instances"].values()) > 0
    assert (tmp_path / "pr_curve.png").exists()
    assert json.loads((tmp_path / "evaluation.json").read_text())["task"] == "detect"


def test_map50_of_perfect_missing_and_misplaced_predictions() -> None:
    truths = [[(0, (0.1, 0.1, 0.3, 0.3)), (1, (0.5, 0.5, 0.9, 0.9))], [(0, (0.2, 0.2, 0.4, 0.4))]]
    perfect = [[(c, 0.9, b) for c, b in t] for t in truths]
    # 101-point interpolation as ultralytics computes it: a perfect detector scores 0.995
    result = detection_map50(predictions=perfect, truths=truths, n_classes=2)
    assert result["map50"] == pytest.approx(0.995)
    none: list[list[tuple[int, float, tuple[float, float, float, float]]]] = [[], []]
    assert detection_map50(predictions=none, truths=truths, n_classes=2)["map50"] == 0.0
    # class 1 found, class 0 boxes all misplaced: mAP50 is the mean of the two classes' AP
    shifted = [
        [(0, 0.9, (0.6, 0.1, 0.8, 0.3)), (1, 0.8, (0.5, 0.5, 0.9, 0.9))],
        [(0, 0.7, (0.7, 0.7, 0.9, 0.9))],
    ]
    result = detection_map50(predictions=shifted, truths=truths, n_classes=2)
    assert result["ap50"] == {0: 0.0, 1: pytest.approx(0.995)}
    assert result["map50"] == pytest.approx(0.995 / 2)


def test_promote_bumps_version_and_keeps_sha(grader_model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = promote(run_dir=grader_model_dir, models_dir=models)
    second = promote(run_dir=grader_model_dir, models_dir=models)
    assert (first.version, first.previous_version) == (1, None)
    assert (second.version, second.previous_version) == (2, 1)
    card = load_card(models / "grader")
    assert card.version == 2
    assert card.sha256 == file_sha256(models / "grader" / "model.onnx") == first.sha256
    assert sorted(p.name for p in models.iterdir()) == ["grader"]  # no staging left behind
    from inspection.grading.predictors import OnnxGrader
    from inspection.settings import ModelSettings

    grader = OnnxGrader(model_dir=models / "grader", settings=ModelSettings(max_batch=1))
    try:
        assert grader.version == "grader@2"
        result = grader.predict(np.full((120, 90, 3), 128, np.uint8))
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    finally:
        grader.close()


def test_promote_refuses_a_run_whose_model_does_not_match_its_card(
    grader_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(grader_model_dir, run)
    with (run / "model.onnx").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        promote(run_dir=run, models_dir=tmp_path / "models")
    assert not (tmp_path / "models" / "grader").exists()
