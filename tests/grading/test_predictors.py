"""Predictors: provider choice, YOLO decoding of both layouts, NMS, severity, real ONNX models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from inspection.errors import ServiceUnavailable
from inspection.grading.model_card import CARD_FILE, load_card, write_card
from inspection.grading.predictors import (
    CPU,
    CUDA,
    TENSORRT,
    DetectorMeta,
    OnnxDefectDetector,
    OnnxGrader,
    decode_detections,
    defects_from_boxes,
    nms,
    severity_for,
    softmax,
)
from inspection.grading.preprocess import Letterbox, to_model_input
from inspection.grading.types import GRADES
from inspection.settings import ModelSettings
from tests.fixtures.images import make_product_image
from tests.grading.conftest import write_constant_detector

MODEL_SETTINGS = ModelSettings(intra_op_threads=1, max_batch=1)


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("auto", [CPU], [CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", [CPU, CUDA, TENSORRT], [TENSORRT, CUDA, CPU]),
        ("auto", ["AzureExecutionProvider", CPU], [CPU]),
        ("", [CUDA, CPU], [CUDA, CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        ("cuda", [CPU], [CPU]),  # asked for a GPU that is not there: CPU, with a warning
        ("tensorrt,cuda", [TENSORRT, CUDA, CPU], [TENSORRT, CUDA, CPU]),
        ("CUDAExecutionProvider, cpu", [CUDA, CPU], [CUDA, CPU]),
        ("cuda,cuda", [CUDA, CPU], [CUDA, CPU]),
    ],
)
def test_choose_providers(requested: str, available: list[str], expected: list[str]) -> None:
    from inspection.grading.predictors import choose_providers

    assert choose_providers(requested, available) == expected


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32
    )
    scores = np.array([0.8, 0.9, 0.7, 0.3], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_decode_end_to_end_layout() -> None:
    rows = np.zeros((2, 300, 6), np.float32)
    rows[0, 0] = [10, 20, 110, 220, 0.9, 2]
    rows[0, 1] = [30, 30, 40, 40, 0.1, 0]  # below the confidence threshold
    rows[0, 2] = [5, 5, 50, 50, 0.95, 1]
    rows[1, 5] = [0, 0, 64, 64, 0.5, 0]
    first, second = decode_detections(rows, num_classes=3, confidence=0.25)
    assert first.tolist() == [
        [5, 5, 50, 50, pytest.approx(0.95), 1],
        [10, 20, 110, 220, pytest.approx(0.9), 2],
    ]
    assert second.shape == (1, 6) and second[0, 5] == 0


def _raw_output(
    boxes: list[tuple[float, float, float, float, int, float]], nc: int, anchors: int
) -> np.ndarray:
    """Builds a raw [1, 4+nc, A] tensor; boxes as (cx, cy, w, h, class, score)."""
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    out[0, 4:, :] = 0.01
    for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[0, :4, i] = [cx, cy, w, h]
        out[0, 4 + cls, i] = score
    return out


def test_decode_raw_layout_with_classwise_nms() -> None:
    out = _raw_output(
        [
            (100, 100, 40, 40, 0, 0.9),  # crack
            (102, 101, 40, 40, 0, 0.8),  # same crack, lower score: suppressed
            (101, 100, 40, 40, 1, 0.7),  # a stain in the same place: another class, kept
            (300, 300, 20, 10, 1, 0.6),
            (500, 500, 20, 10, 0, 0.2),  # below threshold
        ],
        nc=2,
        anchors=8400,
    )
    (decoded,) = decode_detections(out, num_classes=2, confidence=0.25, iou=0.7)
    assert decoded[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert decoded[:, 5].tolist() == [0, 1, 1]
    np.testing.assert_allclose(decoded[0, :4], [80, 80, 120, 120])
    np.testing.assert_allclose(decoded[2, :4], [290, 295, 310, 305])


def test_decode_tells_layouts_apart_when_nc_is_two() -> None:
    # nc=2 makes raw [N, 6, A]: it must not be mistaken for end-to-end [N, M, 6].
    raw = _raw_output([(100, 100, 10, 10, 1, 0.9)], nc=2, anchors=2100)
    (decoded,) = decode_detections(raw, num_classes=2)
    assert decoded.shape == (1, 6) and decoded[0, 5] == 1
    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, 0] = [1, 2, 3, 4, 0.5, 1]
    (decoded,) = decode_detections(e2e, num_classes=2)
    assert decoded.tolist() == [[1, 2, 3, 4, 0.5, 1]]


def test_decode_rejects_unknown_shapes() -> None:
    with pytest.raises(ValueError, match="neither"):
        decode_detections(np.zeros((1, 10, 7), np.float32), num_classes=2)
    with pytest.raises(ValueError, match="3-D"):
        decode_detections(np.zeros((10, 6), np.float32), num_classes=2)


def test_boxes_map_back_through_the_letterbox() -> None:
    # An 800x400 photo letterboxed to 640: scale 0.8, 160 px of padding above and below.
    meta = DetectorMeta(box=Letterbox(scale=0.8, pad_x=0, pad_y=160), width=800, height=400)
    rows = np.array([[80, 200, 160, 280, 0.9, 0], [0, 0, 640, 100, 0.8, 1]], np.float32)
    defects = defects_from_boxes(rows, meta=meta, classes=["crack", "stain"])
    assert len(defects) == 1  # the second box lies wholly in the padding
    (crack,) = defects
    assert crack.defect_type == "crack"
    assert crack.box == pytest.approx((0.125, 0.125, 0.25, 0.375))
    assert crack.area_fraction == pytest.approx(0.125 * 0.25)
    assert crack.severity == "severe"


@pytest.mark.parametrize(
    ("defect_type", "area", "severity"),
    [
        ("scratch", 0.001, "minor"),
        ("scratch", 0.02, "moderate"),
        ("stain", 0.2, "severe"),
        ("crack", 0.001, "moderate"),
        ("crack", 0.02, "severe"),
        ("missing_part", 0.3, "severe"),
        ("Tear", 0.0099, "moderate"),
    ],
)
def test_severity_from_area_and_type(defect_type: str, area: float, severity: str) -> None:
    assert severity_for(defect_type=defect_type, area_fraction=area) == severity


def test_softmax_with_temperature() -> None:
    logits = np.array([[2.0, 1.0, 0.0]])
    sharp, flat = softmax(logits, 1.0), softmax(logits, 4.0)
    assert sharp.sum() == pytest.approx(1.0) and flat.sum() == pytest.approx(1.0)
    assert flat.max() < sharp.max()  # T > 1 softens over-confident logits
    assert softmax(np.array([[1000.0, 0.0, 0.0]]))[0, 0] == pytest.approx(1.0)  # no overflow


# --- real ONNX models from the training pipeline's fixtures ---


def test_grader_probabilities_are_the_calibrated_softmax(grader_model_dir: Path) -> None:
    grader = OnnxGrader(model_dir=grader_model_dir, settings=MODEL_SETTINGS)
    card = load_card(grader_model_dir)
    images = [make_product_image(seed=s, defect="crack" if s % 2 else None) for s in range(3)]
    results = grader.predict_batch(images)
    session = ort.InferenceSession(str(grader_model_dir / "model.onnx"))
    batch = np.stack([to_model_input(im, card.preprocessing) for im in images])
    logits, embedding = session.run(["logits", "embedding"], {"images": batch})
    expected = softmax(logits, card.calibration.temperature)
    for i, result in enumerate(results):
        probs = [result.probabilities[g] for g in GRADES]
        np.testing.assert_allclose(probs, expected[i], atol=1e-6)
        assert sum(probs) == pytest.approx(1.0)
        assert result.embedding is not None
        np.testing.assert_allclose(result.embedding, embedding[i], atol=1e-5)
    assert grader.version == card.version_label
    assert grader.provider == "CPUExecutionProvider"
    grader.close()


def test_grader_batch_equals_one_by_one(grader_model_dir: Path) -> None:
    grader = OnnxGrader(model_dir=grader_model_dir, settings=MODEL_SETTINGS)
    images = [make_product_image(seed=s, kind=k) for s, k in enumerate(("box", "shoe", "mug"))]
    batched = grader.predict_batch(images)
    for image, together in zip(images, batched, strict=True):
        alone = grader.predict(image)
        for grade in GRADES:
            assert alone.probabilities[grade] == pytest.approx(
                together.probabilities[grade], abs=1e-5
            )
    grader.close()


def test_grader_reads_class_order_from_the_card(grader_model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(grader_model_dir, tmp_path / "g")
    card = load_card(tmp_path / "g")
    # Pretend the model's outputs are in another order: the card is what says which is which.
    permuted = [card.classes[2], card.classes[0], card.classes[1]]
    write_card(tmp_path / "g", card.model_copy(update={"classes": permuted}))
    original = OnnxGrader(model_dir=grader_model_dir, settings=MODEL_SETTINGS)
    reordered = OnnxGrader(model_dir=tmp_path / "g", settings=MODEL_SETTINGS)
    image = make_product_image(seed=7)
    a, b = original.predict(image), reordered.predict(image)
    for column, name in enumerate(permuted):
        assert b.probabilities[name] == pytest.approx(
            a.probabilities[card.classes[column]], abs=1e-6
        )
    original.close()
    reordered.close()


def test_serving_parity_torch_vs_onnx_grader(trained_grader) -> None:  # type: ignore[no-untyped-def]
    """The service's predictor and the training-side torch model agree (< 1e-4)."""
    torch = pytest.importorskip("torch")
    grader = OnnxGrader(model_dir=trained_grader.model_dir, settings=MODEL_SETTINGS)
    images = [make_product_image(seed=s, defect=d) for s, d in enumerate((None, "crack", "stain"))]
    batch = np.stack([to_model_input(im, grader.card.preprocessing) for im in images])
    with torch.no_grad():
        logits, _ = trained_grader.model(torch.from_numpy(batch))
    expected = softmax(
        logits.numpy()[:, [grader.card.classes.index(g) for g in GRADES]], grader.temperature
    )
    served = np.array([[r.probabilities[g] for g in GRADES] for r in grader.predict_batch(images)])
    assert np.abs(served - expected).max() < 1e-4
    grader.close()


def test_end_to_end_detector_runs_on_a_real_export(detector_model_dir: Path) -> None:
    detector = OnnxDefectDetector(
        model_dir=detector_model_dir, settings=MODEL_SETTINGS, confidence=0.0
    )
    card = load_card(detector_model_dir)
    image = make_product_image(width=640, height=480, defect="crack", seed=3)
    defects = detector.predict(image)
    assert 0 < len(defects) <= 300  # confidence 0 keeps every row the head emits
    for defect in defects:
        x1, y1, x2, y2 = defect.box
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
        assert defect.defect_type in card.classes
        assert defect.severity in ("minor", "moderate", "severe")
    scores = [d.confidence for d in defects]
    assert scores == sorted(scores, reverse=True)
    assert detector.version == card.version_label


def test_raw_layout_detector_runs_on_a_real_export(raw_detector_dir: Path) -> None:
    session = ort.InferenceSession(str(raw_detector_dir / "model.onnx"))
    card = load_card(raw_detector_dir)
    assert session.get_outputs()[0].shape[1] == 4 + len(card.classes)  # really the raw layout
    detector = OnnxDefectDetector(
        model_dir=raw_detector_dir, settings=MODEL_SETTINGS, confidence=0.001, iou=0.5
    )
    image = make_product_image(width=640, height=480, defect="dent", seed=2)
    defects = detector.predict(image)
    assert defects, "a one-epoch detector still scores some anchors above 0.001"
    for defect in defects:
        x1, y1, x2, y2 = defect.box
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1
    # In model-input pixels (before clipping to the photo), NMS left no same-class pair
    # overlapping by more than the IoU threshold.
    batch = detector.pre_process([image])
    (decoded,) = decode_detections(
        detector.forward(batch)["output0"], num_classes=len(card.classes), confidence=0.001, iou=0.5
    )
    assert len(decoded) >= len(defects)
    for cls in np.unique(decoded[:, 5]):
        same = decoded[decoded[:, 5] == cls]
        assert len(nms(same[:, :4], same[:, 4], 0.5)) == len(same)


def test_detector_maps_known_boxes_through_onnx_runtime(tmp_path: Path) -> None:
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [80, 200, 160, 280, 0.9, 0]  # crack, in the letterboxed 640 input
    rows[0, 1] = [320, 320, 330, 330, 0.1, 1]  # below the threshold
    model_dir = write_constant_detector(
        tmp_path / "det", rows=rows, size=640, classes=["crack", "stain"]
    )
    detector = OnnxDefectDetector(model_dir=model_dir, settings=MODEL_SETTINGS)
    (defects,) = detector.predict_batch([make_product_image(width=800, height=400)])
    assert [d.defect_type for d in defects] == ["crack"]
    assert defects[0].box == pytest.approx((0.125, 0.125, 0.25, 0.375))
    assert defects[0].confidence == pytest.approx(0.9)


def test_missing_or_mismatched_models_are_refused_with_a_hint(
    grader_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ServiceUnavailable) as caught:
        OnnxGrader(model_dir=tmp_path / "nothing", settings=MODEL_SETTINGS)
    assert "make models" in (caught.value.hint or "")

    shutil.copytree(grader_model_dir, tmp_path / "tampered")
    with (tmp_path / "tampered" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ServiceUnavailable, match="sha256"):
        OnnxGrader(model_dir=tmp_path / "tampered", settings=MODEL_SETTINGS)

    with pytest.raises(ServiceUnavailable, match="expected detect"):
        OnnxDefectDetector(model_dir=grader_model_dir, settings=MODEL_SETTINGS)

    shutil.copytree(grader_model_dir, tmp_path / "classes")
    card = yaml.safe_load((tmp_path / "classes" / CARD_FILE).read_text())
    card["classes"] = ["good", "bad", "ugly"]
    (tmp_path / "classes" / CARD_FILE).write_text(yaml.safe_dump(card))
    with pytest.raises(ServiceUnavailable, match="grades"):
        OnnxGrader(model_dir=tmp_path / "classes", settings=MODEL_SETTINGS)


BUNDLED = Path(__file__).resolve().parents[2] / "models"


def test_bundled_int8_grader_loads_and_grades_like_its_fp32_source() -> None:
    """`INSPECTION_MODEL_GRADER=grader-int8` must work on a fresh checkout."""
    fp32 = OnnxGrader(model_dir=BUNDLED / "grader", settings=MODEL_SETTINGS)
    int8 = OnnxGrader(model_dir=BUNDLED / "grader-int8", settings=MODEL_SETTINGS)
    try:
        assert int8.card.precision == "int8"
        assert int8.version == f"{fp32.version}+int8"
        # The INT8 file was quantised from this very fp32 file.
        assert int8.card.metrics["quantization"]["fp32_sha256"] == fp32.card.sha256
        # Measured on the held-out splits when it was made (`training quantize --evaluate-on`):
        # the target is an AUROC loss of at most 0.005.
        for split in ("val", "test"):
            assert int8.card.metrics[split]["auroc_loss"] <= 0.005
        images = [make_product_image(seed=s, kind="mug") for s in range(4)]
        for a, b in zip(fp32.predict_batch(images), int8.predict_batch(images), strict=True):
            assert max(abs(a.probabilities[g] - b.probabilities[g]) for g in GRADES) < 0.15
    finally:
        fp32.close()
        int8.close()
