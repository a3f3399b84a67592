"""Model cards: what a bundled ONNX model is, how to feed it, and how well it did.

The card is the one place preprocessing parameters live: the service reads them here and the
training pipeline writes them here, so serving and training cannot drift apart.
A model lives in a folder: `model.onnx` beside `model_card.yaml`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

MODEL_FILE = "model.onnx"
CARD_FILE = "model_card.yaml"

# ImageNet statistics, the ones EfficientNet-Lite0's pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocessing(BaseModel):
    """How a photo becomes the model's input tensor (see `inspection.grading.preprocess`)."""

    size: int = Field(default=224, ge=16, le=4096)
    # squash: resize the whole photo to size x size (defects near the edge stay in view);
    # center_crop: resize shorter side to `resize` then crop; letterbox: keep aspect, pad (YOLO).
    mode: Literal["squash", "center_crop", "letterbox"] = "squash"
    resize: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: int = 114


class Calibration(BaseModel):
    """Temperature scaling fitted on the validation split: p = softmax(logits / T)."""

    method: Literal["none", "temperature"] = "temperature"
    temperature: float = Field(default=1.0, gt=0)
    ece_before: float | None = None
    ece_after: float | None = None


class ModelCard(BaseModel):
    """Everything the service and a reviewer need to know about one exported model."""

    name: str
    task: Literal["classify", "detect"]
    version: int = Field(default=1, ge=1)
    arch: str
    file: str = MODEL_FILE
    sha256: str = ""
    # Numeric precision of the weights and activations: an INT8 export of a grader grades a
    # few photos differently from its fp32 source, so audit records must tell them apart.
    precision: Literal["fp32", "int8"] = "fp32"
    classes: list[str]
    preprocessing: Preprocessing = Preprocessing()
    calibration: Calibration = Calibration()
    # Output tensor names: classifiers export "logits" and "embedding"; detectors "output0".
    outputs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    data: str = ""
    training_command: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    notes: str = ""

    @property
    def version_label(self) -> str:
        """Short id used in API responses and audit events, e.g. `grader@3` or `grader@3+int8`."""
        label = f"{self.name}@{self.version}"
        return label if self.precision == "fp32" else f"{label}+{self.precision}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_card(model_dir: Path) -> ModelCard:
    """Reads `model_card.yaml` from a model folder."""
    with (model_dir / CARD_FILE).open(encoding="utf-8") as fh:
        return ModelCard.model_validate(yaml.safe_load(fh))


def write_card(model_dir: Path, card: ModelCard) -> Path:
    """Writes the card (with the model file's sha256 filled in) and returns its path."""
    model_path = model_dir / card.file
    if model_path.exists():
        card = card.model_copy(update={"sha256": file_sha256(model_path)})
    path = model_dir / CARD_FILE
    path.write_text(
        yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return path
