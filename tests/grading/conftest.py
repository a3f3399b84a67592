"""Grading test helpers: settings pointing at the fixture models, a real pipeline, ONNX builders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inspection.grading.model_card import ModelCard, Preprocessing, load_card, write_card
from inspection.grading.pipeline import GradingPipeline
from inspection.settings import Settings


def settings_for(models_dir: Path, **model_overrides: object) -> Settings:
    """Service settings that load models from `models_dir`."""
    settings = Settings()
    settings.model = settings.model.model_copy(update={"dir": models_dir, **model_overrides})
    return settings


@pytest.fixture(scope="session")
def grading_pipeline(models_dir: Path) -> Iterator[GradingPipeline]:
    """A pipeline with the real (one-epoch) grader and detector loaded."""
    pipeline = GradingPipeline.from_settings(settings=settings_for(models_dir))
    assert pipeline.ready
    yield pipeline
    pipeline.close()


@pytest.fixture(scope="session")
def raw_detector_dir(detector_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture detector's weights exported in the raw [N, 4+nc, A] layout (YOLO11/v8 style).

    The fixture detector is exported end-to-end ([N, 300, 6]); exporting the same .pt with
    end2end=False gives the other layout the service must also decode.
    """
    pytest.importorskip("ultralytics", reason="training extra (ultralytics) not installed")
    from training.yolo_offline import load_ultralytics

    base = tmp_path_factory.mktemp("raw-detector")
    YOLO = load_ultralytics(config_dir=base / "ultralytics-config").YOLO

    card = load_card(detector_model_dir)
    out = base / "detector"
    out.mkdir()
    shutil.copy2(detector_model_dir / "model.pt", out / "model.pt")
    exported = YOLO(str(out / "model.pt")).export(
        format="onnx", imgsz=card.preprocessing.size, dynamic=False, simplify=False,
        device="cpu", end2end=False,
    )  # fmt: skip
    shutil.move(str(exported), out / "model.onnx")
    write_card(out, card.model_copy(update={"name": "detector-raw", "outputs": {}}))
    return out


def write_constant_detector(
    model_dir: Path, *, rows: np.ndarray, size: int, classes: list[str]
) -> Path:
    """An ONNX 'detector' that outputs fixed end-to-end rows [1, M, 6] whatever the input.

    Lets a test run OnnxDefectDetector through real ONNX Runtime with boxes known exactly.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    constant = helper.make_tensor(
        "rows", TensorProto.FLOAT, list(rows.shape), rows.astype(np.float32).ravel().tolist()
    )
    nodes = [
        # output0 = rows + 0 * mean(images): the input is used, so the graph is a real model.
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["rows", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(rows.shape))],
        initializer=[constant, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, model_dir / "model.onnx")
    write_card(
        model_dir,
        ModelCard(
            name="constant-detector",
            task="detect",
            arch="test",
            classes=classes,
            preprocessing=Preprocessing(size=size, mode="letterbox", mean=(0, 0, 0), std=(1, 1, 1)),
        ),
    )
    return model_dir
