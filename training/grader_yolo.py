"""The YOLO11n-cls grader (`--arch yolo11n-cls`): ultralytics from .yaml, for comparison.

Trained by ultralytics from scratch (no hub weights exist offline), then wrapped so the export
has the same contract as the EfficientNet grader: input "images", outputs "logits" (before
softmax) and "embedding" (pooled head features), which the service's OnnxGrader loads.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inspection.grading.model_card import MODEL_FILE, ModelCard, Preprocessing, write_card
from inspection.grading.types import GRADES
from training.calibration import softmax
from training.dataset import LabelledPhoto, describe_data, read_many
from training.metrics import classification_metrics
from training.yolo_offline import load_ultralytics

if TYPE_CHECKING:
    from training.grader import GraderRun

log = logging.getLogger(__name__)


class YoloClsGrader(nn.Module):
    """Runs an ultralytics ClassificationModel but returns (logits, embedding), no softmax."""

    def __init__(self, model: Any):
        super().__init__()
        self.layers = model.model
        self.save = set(model.save)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x: Any = images
        outputs: list[Any] = []
        for m in list(self.layers)[:-1]:
            if m.f != -1:  # layers that read earlier outputs
                x = (
                    outputs[m.f]
                    if isinstance(m.f, int)
                    else [x if j == -1 else outputs[j] for j in m.f]
                )
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        head = self.layers[-1]
        if isinstance(x, list):
            x = torch.cat(x, 1)
        embedding = head.pool(head.conv(x)).flatten(1)
        logits = head.linear(head.drop(embedding))
        return logits, embedding


def _classify_tree(photos: Sequence[LabelledPhoto], root: Path) -> Path:
    """The folder-per-class layout ultralytics classification reads (symlinks, no copies)."""
    shutil.rmtree(root, ignore_errors=True)
    for split in ("train", "val", "test"):
        for grade in GRADES:
            (root / split / grade).mkdir(parents=True, exist_ok=True)
    for k, p in enumerate(photos):
        if p.split in ("train", "val", "test"):
            link = root / p.split / p.grade / f"{k:06d}_{p.path.name}"
            link.symlink_to(p.path)
    return root


def train_yolo_grader(
    *, data_dirs: Sequence[Path], out_dir: Path, epochs: int, size: int, batch_size: int,
    seed: int, threads: int, name: str, command: str,
) -> GraderRun:  # fmt: skip
    """Trains YOLO11n-cls from yolo11n-cls.yaml and exports it with the grader contract."""
    from training.grader import (
        GraderRun,
        _card_metrics,
        _fit_calibration,
        export_onnx,
        predict_logits,
    )

    torch.set_num_threads(threads)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = read_many(dataset_dirs=data_dirs)
    tree = _classify_tree(photos, out_dir / "classify_data")
    ultralytics = load_ultralytics()
    started = time.monotonic()
    model = ultralytics.YOLO("yolo11n-cls.yaml")
    model.train(
        data=str(tree), epochs=epochs, imgsz=size, batch=batch_size, device="cpu", workers=0,
        pretrained=False, amp=False, plots=False, seed=seed, deterministic=True,
        project=str(out_dir / "ultralytics"), name="train", exist_ok=True, verbose=False,
    )  # fmt: skip
    train_seconds = time.monotonic() - started
    weights = Path(model.trainer.save_dir) / "weights"
    best = weights / "best.pt" if (weights / "best.pt").exists() else weights / "last.pt"
    shutil.copyfile(best, out_dir / "model.pt")
    net = ultralytics.YOLO(str(best)).model.float().eval()
    classes = [net.names[i] for i in range(len(net.names))]
    wrapper = YoloClsGrader(net).eval()
    # ultralytics validates classifiers by resizing the short side then centre-cropping, RGB/255
    spec = Preprocessing(size=size, mode="center_crop", resize=size, mean=(0, 0, 0), std=(1, 1, 1))
    order = [classes.index(g) for g in GRADES]

    def probs_for(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        subset = [p for p in photos if p.split == split]
        logits = predict_logits(model=wrapper, photos=subset, spec=spec)
        labels = np.array([classes.index(p.grade) for p in subset], dtype=np.int64)
        return logits, labels, np.array([p.grade_index for p in subset], dtype=np.int64)

    val_logits, val_labels, _ = probs_for("val")
    calibration = _fit_calibration(val_logits, val_labels)
    metrics: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "epochs": epochs}
    for split in ("val", "test"):
        logits, _, grade_labels = probs_for(split)
        if len(grade_labels):
            probs = softmax(logits / calibration.temperature)[:, order]
            metrics[split] = classification_metrics(probs=probs, labels=grade_labels)
    export_onnx(model=wrapper, size=size, path=out_dir / MODEL_FILE)
    card = ModelCard(
        name=name,
        task="classify",
        arch="yolo11n-cls",
        classes=classes,
        preprocessing=spec,
        calibration=calibration,
        outputs={
            "logits": f"[N,{len(classes)}] raw logits in card class order; p = softmax(logits / T)",
            "embedding": "[N,1280] pooled features of the Classify head",
        },
        metrics=_card_metrics(metrics),
        data=describe_data(dataset_dirs=data_dirs),
        training_command=command,
        notes=(
            f"ultralytics {ultralytics.__version__} yolo11n-cls.yaml from scratch (no pretrained "
            f"weights offline), {epochs} epoch(s) at {size}px; exported through a wrapper that "
            "drops the softmax so the service's OnnxGrader reads it like the EfficientNet grader."
        ),
    )
    write_card(out_dir, card)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return GraderRun(model_dir=out_dir, card=card, metrics=metrics)
