"""Partial fine-tuning over cached frozen features: frozen weights stay, the export is whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train


def test_frozen_blocks_keep_imagenet_weights_and_export_matches(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort
    import torch

    from inspection.grading.model_card import load_card
    from inspection.grading.preprocess import to_model_input
    from training.calibration import softmax
    from training.dataset import read_grades_csv
    from training.grader import GraderNet, load_grader, read_rgb, train_grader

    run = train_grader(
        data_dirs=[synthetic_dataset], out_dir=tmp_path / "run", epochs=1, size=64,
        batch_size=16, freeze_blocks=12, max_train=24, progress=False,
    )  # fmt: skip
    assert run.metrics["train_count"] == 24
    assert "blocks 0-11 of 16 frozen" in run.card.notes
    trained = load_grader(model_dir=run.model_dir)
    pretrained = GraderNet(size=64, pretrained=True)
    frozen = trained.backbone._blocks[11].state_dict()
    for name, value in pretrained.backbone._blocks[11].state_dict().items():
        assert torch.equal(value, frozen[name]), f"frozen block 11 changed: {name}"
    moved = any(
        not torch.equal(v, trained.backbone._blocks[12].state_dict()[k])
        for k, v in pretrained.backbone._blocks[12].state_dict().items()
        if v.dtype.is_floating_point and "running" not in k
    )
    assert moved, "block 12 should have trained"
    card = load_card(run.model_dir)
    photos = read_grades_csv(dataset_dir=synthetic_dataset)[:4]
    batch = np.stack([to_model_input(read_rgb(p.path), card.preprocessing) for p in photos])
    with torch.no_grad():
        t_logits, _ = trained(torch.from_numpy(batch))
    session = ort.InferenceSession(
        str(run.model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (o_logits,) = session.run(["logits"], {"images": batch})
    t = card.calibration.temperature
    assert np.abs(softmax(t_logits.numpy() / t) - softmax(o_logits / t)).max() < 1e-4
