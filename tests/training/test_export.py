"""Exported models load and run in onnxruntime, and the ONNX grader matches the torch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.grading.model_card import load_card
from inspection.grading.preprocess import to_model_input
from inspection.grading.types import GRADES

pytestmark = pytest.mark.train


def _session(model_dir: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def test_grader_card_describes_the_export(grader_model_dir: Path) -> None:
    card = load_card(grader_model_dir)
    assert card.task == "classify"
    assert card.classes == list(GRADES)
    assert card.arch == "efficientnet-lite0"
    assert card.preprocessing.size == 96
    assert card.calibration.temperature > 0
    assert card.calibration.ece_before is not None
    assert set(card.outputs) == {"logits", "embedding"}
    assert card.training_command.startswith("training train-grader")
    from inspection.grading.model_card import file_sha256

    assert card.sha256 == file_sha256(grader_model_dir / "model.onnx")


def test_grader_onnx_runs_with_dynamic_batch(
    grader_model_dir: Path, synthetic_dataset: Path
) -> None:
    from training.dataset import read_grades_csv
    from training.grader import read_rgb

    card = load_card(grader_model_dir)
    photos = read_grades_csv(dataset_dir=synthetic_dataset)[:5]
    batch = np.stack([to_model_input(read_rgb(p.path), card.preprocessing) for p in photos])
    session = _session(grader_model_dir)
    assert [i.name for i in session.get_inputs()] == ["images"]
    logits, embedding = session.run(["logits", "embedding"], {"images": batch})
    assert logits.shape == (5, 3)
    assert embedding.shape == (5, 1280)
    assert np.isfinite(logits).all() and np.isfinite(embedding).all()
    one, _ = session.run(["logits", "embedding"], {"images": batch[:1]})
    np.testing.assert_allclose(one[0], logits[0], atol=1e-4)


def test_serving_parity_torch_vs_onnx(trained_grader, synthetic_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    """Calibrated probabilities from torch (eval) and ONNX agree on the same inputs."""
    import torch

    from training.calibration import softmax
    from training.dataset import read_grades_csv
    from training.grader import read_rgb

    card = load_card(trained_grader.model_dir)
    photos = read_grades_csv(dataset_dir=synthetic_dataset)[:8]
    batch = np.stack([to_model_input(read_rgb(p.path), card.preprocessing) for p in photos])
    with torch.no_grad():
        t_logits, t_emb = trained_grader.model(torch.from_numpy(batch))
    o_logits, o_emb = _session(trained_grader.model_dir).run(None, {"images": batch})
    t = card.calibration.temperature
    diff = np.abs(softmax(t_logits.numpy() / t) - softmax(o_logits / t)).max()
    assert diff < 1e-4, f"torch vs ONNX calibrated probabilities differ by {diff}"
    np.testing.assert_allclose(t_emb.numpy(), o_emb, atol=1e-3, rtol=1e-3)


def test_detector_onnx_runs_and_card_matches(
    detector_model_dir: Path, synthetic_dataset: Path
) -> None:
    from training.dataset import DEFECT_TYPES, read_grades_csv
    from training.grader import read_rgb

    card = load_card(detector_model_dir)
    assert card.task == "detect"
    assert card.classes == list(DEFECT_TYPES)
    assert card.preprocessing.mode == "letterbox"
    assert card.preprocessing.size == 160
    assert "output0" in card.outputs
    assert (detector_model_dir / "model.pt").exists()
    photo = read_grades_csv(dataset_dir=synthetic_dataset)[0]
    x = to_model_input(read_rgb(photo.path), card.preprocessing)[None]
    (out,) = _session(detector_model_dir).run(["output0"], {"images": x})
    assert out.shape == (1, 300, 6)
    assert np.isfinite(out).all()


def test_models_dir_has_both_models(models_dir: Path) -> None:
    for name, task in (("grader", "classify"), ("detector", "detect")):
        assert (models_dir / name / "model.onnx").stat().st_size > 100_000
        assert load_card(models_dir / name).task == task


def test_grader_trains_a_defect_map_on_the_boxes(trained_grader) -> None:  # type: ignore[no-untyped-def]
    """The default grader carries the defect-map head; the ONNX contract above stays the same."""
    import json

    assert trained_grader.model.defect_head is not None
    history = json.loads((trained_grader.model_dir / "metrics.json").read_text())["history"]
    # the synthetic photos have boxes, so the map loss was computed (and is a real BCE value)
    assert 0.0 < history[-1]["train_map_loss"] < 5.0
    assert "val_macro_f1" in history[-1]
