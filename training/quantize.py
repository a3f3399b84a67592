"""INT8 static quantisation of the exported grader (QDQ format) with onnxruntime.quantization.

Calibration images go through the same `to_model_input` the service uses, so the activation
ranges are those of production tensors; the result is a model folder the service loads as is.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from inspection.grading.model_card import (
    MODEL_FILE,
    Preprocessing,
    file_sha256,
    load_card,
    write_card,
)
from inspection.grading.preprocess import to_model_input

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# A few hundred photos pin MinMax ranges well; more only costs calibration time.
DEFAULT_MAX_CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 8
# Photos whose shorter side is at least this are decoded at half size for calibration.
REDUCED_DECODE_MIN_SIDE = 1024
INPUT_NAME = "images"
INT8_SUFFIX = "-int8"


def list_calibration_images(
    source: Sequence[Path] | Path, *, limit: int = DEFAULT_MAX_CALIBRATION_IMAGES, seed: int = 0
) -> list[Path]:
    """Calibration image files: a folder (searched recursively) or a list, sampled to `limit`."""
    if isinstance(source, Path):
        if not source.is_dir():
            raise FileNotFoundError(f"calibration folder {source} does not exist")
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise ValueError(f"no calibration images (jpg/png/webp) found in {source}")
    if len(paths) > limit:
        # A seeded sample so two runs on the same folder give the same model.
        paths = sorted(random.Random(seed).sample(paths, limit))
    return paths


def read_rgb(path: Path) -> np.ndarray:
    """Decodes an image file into RGB uint8; large photos at half size (calibration needs 224 px,
    and a 12 MP decode at full size is most of the calibration time). A small photo is decoded
    whole: halving a 300 px tile would calibrate on inputs blurrier than the service sees."""
    with Image.open(path) as header:
        small = min(header.size) < REDUCED_DECODE_MIN_SIDE
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if small else cv2.IMREAD_REDUCED_COLOR_2)
    if image is None:
        raise ValueError(f"cannot decode calibration image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class GraderCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed calibration batches to the quantiser, one `images` batch at a time."""

    def __init__(
        self, *, paths: Sequence[Path], spec: Preprocessing, batch_size: int = CALIBRATION_BATCH
    ) -> None:
        self._paths = list(paths)
        self._spec = spec
        self._batch_size = batch_size
        self._batches: Iterator[dict[str, np.ndarray]] = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self._paths), self._batch_size):
            chunk = self._paths[start : start + self._batch_size]
            batch = np.stack([to_model_input(read_rgb(p), self._spec) for p in chunk])
            yield {INPUT_NAME: batch}

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Next calibration batch, or None when all images were fed."""
        return next(self._batches, None)

    def rewind(self) -> None:
        """Starts over (the calibrator may pass over the data more than once)."""
        self._batches = self._iterate()


def _first_conv_and_head(model_path: Path) -> tuple[str | None, str | None]:
    """Names of the stem convolution and the classifier head (the usual INT8-sensitive nodes)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    heads = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    return (convs[0] if convs else None), (heads[-1] if heads else None)


def quantize_grader(
    *,
    model_dir: Path,
    calibration_images: Sequence[Path] | Path,
    out_dir: Path,
    per_channel: bool = True,
    activation_type: QuantType = QuantType.QUInt8,
    exclude_stem: bool = False,
    exclude_head: bool = True,
    calibrate_method: CalibrationMethod = CalibrationMethod.MinMax,
    max_calibration_images: int = DEFAULT_MAX_CALIBRATION_IMAGES,
    command: str = "",
) -> Path:
    """Quantises the grader in `model_dir` to INT8 (QDQ) and writes model + card to `out_dir`.

    Weights are signed INT8 per output channel; activations unsigned INT8 by default, which is
    the pairing ONNX Runtime's x86 VNNI kernels run fastest (no reduce_range needed on VNNI).
    The classifier head stays in fp32 by default: it is 0.1 % of the work and the logits decide
    the grade. The "embedding" output is kept (dequantised to float).

    Example:
        >>> quantize_grader(model_dir=Path("models/grader"),
        ...                 calibration_images=Path("data/synth/images/val"),
        ...                 out_dir=Path("models/grader-int8"))  # doctest: +SKIP
        PosixPath('models/grader-int8/model.onnx')
    """
    card = load_card(model_dir)
    if card.task != "classify":
        raise ValueError(f"{model_dir} holds a {card.task} model; only the grader is quantised")
    source = model_dir / card.file
    paths = list_calibration_images(calibration_images, limit=max_calibration_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    log.info("quantising %s on %d calibration images", source, len(paths))

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        # Shape inference + ORT graph optimisation first (folds BN and constant pads into Conv),
        # as onnxruntime recommends, so QDQ pairs sit around the ops that actually run.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        stem, head = _first_conv_and_head(prepared)
        excluded = [n for n, skip in ((stem, exclude_stem), (head, exclude_head)) if skip and n]
        reader = GraderCalibrationReader(paths=paths, spec=card.preprocessing)
        quantize_static(
            prepared,
            target,
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            activation_type=activation_type,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=False,
            calibrate_method=calibrate_method,
            nodes_to_exclude=excluded,
            extra_options={
                # Symmetric signed weights match the s8 side of the u8s8 VNNI kernels.
                "WeightSymmetric": True,
                "ActivationSymmetric": activation_type == QuantType.QInt8,
            },
        )

    facts: dict[str, Any] = {
        "format": "QDQ",
        "weights": "int8 symmetric, per-channel" if per_channel else "int8 symmetric, per-tensor",
        "activations": "uint8" if activation_type == QuantType.QUInt8 else "int8",
        "calibration_method": calibrate_method.name,
        "calibration_images": len(paths),
        "calibration_source": str(calibration_images)
        if isinstance(calibration_images, Path)
        else f"{len(paths)} listed files",
        "excluded_nodes": excluded,
        "fp32_sha256": file_sha256(source),
        "fp32_arch": card.arch,
        # What made this file, as the training cards record their training command.
        "command": command,
    }
    arch = card.arch if card.arch.endswith(INT8_SUFFIX) else f"{card.arch}{INT8_SUFFIX}"
    notes = (card.notes + "\n" if card.notes else "") + (
        f"INT8 static quantisation (QDQ) of {card.version_label} ({card.arch}); calibrated on "
        f"{len(paths)} images preprocessed with this card's preprocessing."
    )
    # The source's split metrics describe the fp32 file, not this one: they are kept under
    # "fp32" and the INT8 model's own come from `training quantize --evaluate-on`.
    metrics = {k: v for k, v in card.metrics.items() if k not in ("val", "test")}
    metrics["fp32"] = {k: v for k, v in card.metrics.items() if k in ("val", "test")}
    metrics["quantization"] = facts
    int8_card = card.model_copy(
        update={
            "arch": arch,
            "file": MODEL_FILE,
            "sha256": file_sha256(target),
            "precision": "int8",
            "notes": notes,
            "metrics": metrics,
            "created_at": datetime.now(UTC),
        }
    )
    write_card(out_dir, int8_card)
    log.info("wrote %s (%s)", target, arch)
    return target


def _main() -> None:  # pragma: no cover - manual use before the CLI command is registered
    import argparse

    parser = argparse.ArgumentParser(description=quantize_grader.__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("calibration_images", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-tensor", action="store_true")
    parser.add_argument("--int8-activations", action="store_true")
    parser.add_argument("--exclude-stem", action="store_true")
    parser.add_argument("--quantize-head", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    quantize_grader(
        model_dir=args.model_dir,
        calibration_images=args.calibration_images,
        out_dir=args.out_dir,
        per_channel=not args.per_tensor,
        activation_type=QuantType.QInt8 if args.int8_activations else QuantType.QUInt8,
        exclude_stem=args.exclude_stem,
        exclude_head=not args.quantize_head,
    )


if __name__ == "__main__":  # pragma: no cover
    _main()
