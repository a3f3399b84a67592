"""The YOLO11n-cls grader wrapper exports the grader contract and matches ultralytics' output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train


def test_wrapper_logits_match_ultralytics_softmax(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    from training.grader import export_onnx
    from training.grader_yolo import YoloClsGrader
    from training.yolo_offline import load_ultralytics

    ultralytics = load_ultralytics(config_dir=tmp_path / "cfg")
    net = ultralytics.YOLO("yolo11n-cls.yaml").model
    net.yaml["nc"] = 3
    from ultralytics.nn.tasks import ClassificationModel

    model = ClassificationModel(net.yaml, nc=3, verbose=False).eval()
    wrapper = YoloClsGrader(model).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        expected = expected[0] if isinstance(expected, tuple) else expected
        logits, embedding = wrapper(x)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), expected.numpy(), atol=1e-5)
    assert embedding.shape == (2, 1280)
    path = export_onnx(model=wrapper, size=64, path=tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    o_logits, o_emb = session.run(["logits", "embedding"], {"images": x.numpy()})
    np.testing.assert_allclose(o_logits, logits.numpy(), atol=1e-4)
    assert o_emb.shape == (2, 1280)
