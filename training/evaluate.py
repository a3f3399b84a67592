"""Evaluation of an exported model through the service's own ONNX predictors (what we ship).

Graders: accuracy, per-grade precision/recall/F1, macro-F1, resell-vs-not AUROC, ECE,
confusion matrix. Detectors: mAP50 from the ONNX outputs. JSON plus PNG plots.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from inspection.grading.model_card import load_card
from inspection.grading.types import GRADES
from inspection.settings import ModelSettings
from training.calibration import reliability_bins
from training.dataset import LabelledPhoto, read_many
from training.grader import read_rgb
from training.metrics import HEADLINE_METRICS, classification_metrics, resell_scores

log = logging.getLogger(__name__)

REPORT_FILE = "evaluation.json"
EVAL_BATCH = 16
# mAP needs the low-confidence tail too: the service's own threshold would truncate the curve.
MAP_CONFIDENCE = 0.001


def _batches(items: Sequence[LabelledPhoto], size: int, progress: bool, desc: str) -> Any:
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if progress:
        from tqdm import tqdm

        return tqdm(chunks, desc=desc, unit="batch")
    return chunks


def grader_probabilities(
    *, model_dir: Path, photos: Sequence[LabelledPhoto], progress: bool = False
) -> np.ndarray:
    """Calibrated probabilities (GRADES order) from the service's OnnxGrader."""
    from inspection.grading.predictors import OnnxGrader

    grader = OnnxGrader(model_dir=model_dir, settings=ModelSettings(max_batch=1))
    rows: list[list[float]] = []
    try:
        for chunk in _batches(photos, EVAL_BATCH, progress, "grading"):
            for result in grader.predict_batch([read_rgb(p.path) for p in chunk]):
                rows.append([result.probabilities[g] for g in GRADES])
    finally:
        grader.close()
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(GRADES))


def _plot_confusion(cm: list[list[int]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    arr = np.asarray(cm)
    ax.imshow(arr, cmap="Blues")
    ax.set_xticks(range(len(GRADES)), GRADES)
    ax.set_yticks(range(len(GRADES)), GRADES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center",
                    color="white" if arr[i, j] > arr.max() / 2 else "black")  # fmt: skip
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_reliability(bins: list[dict[str, float]], ece: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    acc = [b["accuracy"] if b["count"] else 0.0 for b in bins]
    ax.bar(centres, acc, width=0.09, color="#4a7fb5", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_pr(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str, path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    for name, (recall, precision, ap) in curves.items():
        ax.plot(recall, precision, lw=1.4, label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_grader(
    *, model_dir: Path, photos: Sequence[LabelledPhoto], out_dir: Path, progress: bool = False
) -> dict[str, Any]:
    """Grader metrics and plots over `photos`."""
    probs = grader_probabilities(model_dir=model_dir, photos=photos, progress=progress)
    labels = np.array([p.grade_index for p in photos], dtype=np.int64)
    report = classification_metrics(probs=probs, labels=labels)
    report["reliability"] = reliability_bins(probs=probs, labels=labels)
    _plot_confusion(report["confusion_matrix"], out_dir / "confusion_matrix.png")
    _plot_reliability(report["reliability"], report["ece"], out_dir / "reliability.png")
    y_bin, score = resell_scores(probs, labels)
    if 0 < y_bin.sum() < len(y_bin):
        precision, recall, _ = precision_recall_curve(y_bin, score)
        ap = float(np.sum(np.diff(recall[::-1]) * precision[::-1][1:]))
        report["not_resell_average_precision"] = ap
        _plot_pr(
            {"not resell": (recall, precision, ap)}, "PR: not resellable", out_dir / "pr_curve.png"
        )
    else:
        _plot_pr({}, "PR: one class only in this split", out_dir / "pr_curve.png")
    report["plots"] = ["confusion_matrix.png", "reliability.png", "pr_curve.png"]
    return report


def _label_boxes(photo: LabelledPhoto) -> list[tuple[int, tuple[float, float, float, float]]]:
    """YOLO labels of a photo as (class id, fractional x1, y1, x2, y2)."""
    label = (
        photo.path.parent.parent.parent
        / "labels"
        / photo.path.parent.name
        / (photo.path.stem + ".txt")
    )
    out = []
    if label.exists():
        for line in label.read_text(encoding="utf-8").split("\n"):
            parts = line.split()
            if len(parts) == 5:
                c, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
                out.append((c, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return out


def _iou(a: tuple[float, ...], b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (the COCO/ultralytics-style area under the PR envelope)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.flip(np.maximum.accumulate(np.flip(p)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, r, p), x))


def detection_map50(
    *, predictions: list[list[tuple[int, float, tuple[float, float, float, float]]]],
    truths: list[list[tuple[int, tuple[float, float, float, float]]]], n_classes: int,
) -> dict[str, Any]:  # fmt: skip
    """mAP at IoU 0.5 over classes with ground truth; per-class AP and PR curves."""
    per_class: dict[int, list[tuple[float, int]]] = defaultdict(list)
    n_true: dict[int, int] = defaultdict(int)
    for preds, gts in zip(predictions, truths, strict=True):
        for c, _ in gts:
            n_true[c] += 1
        for c in range(n_classes):
            gt = np.array([b for k, b in gts if k == c], dtype=np.float64).reshape(-1, 4)
            used = np.zeros(len(gt), bool)
            for _, score, box in sorted((p for p in preds if p[0] == c), key=lambda p: -p[1]):
                hit = 0
                if len(gt):
                    ious = _iou(box, gt)
                    ious[used] = 0
                    j = int(ious.argmax())
                    if ious[j] >= 0.5:
                        used[j] = True
                        hit = 1
                per_class[c].append((score, hit))
    aps: dict[int, float] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in range(n_classes):
        if n_true[c] == 0:
            continue
        rows = sorted(per_class[c], key=lambda r: -r[0])
        if not rows:  # nothing predicted for a class that exists: it was missed entirely
            aps[c] = 0.0
            curves[c] = (np.zeros(1), np.zeros(1))
            continue
        hits = np.array([h for _, h in rows], dtype=np.float64)
        tp = np.cumsum(hits)
        fp = np.cumsum(1 - hits)
        recall = tp / n_true[c]
        precision = tp / np.maximum(tp + fp, 1e-12)
        aps[c] = average_precision(recall, precision)
        curves[c] = (recall, precision)
    return {
        "map50": float(np.mean(list(aps.values()))) if aps else 0.0,
        "ap50": aps,
        "curves": curves,
        "instances": dict(n_true),
    }


def evaluate_detector(
    *, model_dir: Path, photos: Sequence[LabelledPhoto], out_dir: Path, progress: bool = False
) -> dict[str, Any]:
    """Detector mAP50 from the ONNX model through the service's decoder; PR curves."""
    from inspection.grading.predictors import OnnxDefectDetector

    card = load_card(model_dir)
    detector = OnnxDefectDetector(
        model_dir=model_dir, settings=ModelSettings(max_batch=1), confidence=MAP_CONFIDENCE
    )
    names = list(card.classes)
    predictions = []
    truths = []
    for chunk in _batches(photos, EVAL_BATCH, progress, "detecting"):
        for photo in chunk:
            defects = detector.predict(read_rgb(photo.path))
            predictions.append(
                [
                    (names.index(d.defect_type), d.confidence, d.box)
                    for d in defects
                    if d.defect_type in names
                ]
            )
            truths.append(_label_boxes(photo))
    result = detection_map50(predictions=predictions, truths=truths, n_classes=len(names))
    curves = {names[c]: (r, p, result["ap50"][c]) for c, (r, p) in result["curves"].items()}
    _plot_pr(
        curves, f"detector PR @ IoU 0.5 (mAP50 {result['map50']:.3f})", out_dir / "pr_curve.png"
    )
    return {
        "count": len(photos),
        "map50": result["map50"],
        "ap50": {names[c]: v for c, v in result["ap50"].items()},
        "instances": {names[c]: v for c, v in result["instances"].items()},
        "plots": ["pr_curve.png"],
    }


def evaluate_model(
    *, model_dir: Path, data_dirs: Sequence[Path], out_dir: Path | None = None,
    split: str = "test", progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Evaluates a model folder on one split of dataset folders; writes JSON and PNG plots."""
    card = load_card(model_dir)
    out = Path(out_dir) if out_dir else Path(model_dir) / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    photos = [p for p in read_many(dataset_dirs=data_dirs) if p.split == split]
    if not photos:
        raise ValueError(f"no photos in split {split!r} of {', '.join(map(str, data_dirs))}")
    if card.task == "classify":
        report = evaluate_grader(model_dir=model_dir, photos=photos, out_dir=out, progress=progress)
    else:
        report = evaluate_detector(
            model_dir=model_dir, photos=photos, out_dir=out, progress=progress
        )
    report = {
        "model": card.version_label,
        "task": card.task,
        "arch": card.arch,
        "split": split,
        "data": [str(d) for d in data_dirs],
        **report,
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    log.info("evaluation written to %s", out / REPORT_FILE)
    return report


def compare_quantized(
    *, fp32_dir: Path, int8_dir: Path, data_dirs: Sequence[Path], splits: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The INT8 grader's own metrics per split, next to its fp32 source's on the same photos.

    Each split gets the INT8 headline metrics, `fp32_resell_auroc`, `auroc_loss` (fp32 minus
    INT8; the quantisation target is <= 0.005) and `argmax_agreement`: the share of photos both
    models give the same grade, which is what a station notices.
    """
    every = read_many(dataset_dirs=data_dirs)
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        photos = [p for p in every if p.split == split]
        if not photos:
            raise ValueError(f"no photos in split {split!r} of {', '.join(map(str, data_dirs))}")
        labels = np.array([p.grade_index for p in photos], dtype=np.int64)
        fp32 = grader_probabilities(model_dir=fp32_dir, photos=photos)
        int8 = grader_probabilities(model_dir=int8_dir, photos=photos)
        ours = classification_metrics(probs=int8, labels=labels)
        theirs = classification_metrics(probs=fp32, labels=labels)
        row = {k: ours[k] for k in HEADLINE_METRICS if k in ours}
        row["fp32_resell_auroc"] = theirs.get("resell_auroc")
        if row["fp32_resell_auroc"] is not None and ours.get("resell_auroc") is not None:
            row["auroc_loss"] = float(theirs["resell_auroc"] - ours["resell_auroc"])
        row["fp32_macro_f1"] = theirs["macro_f1"]
        row["argmax_agreement"] = float((fp32.argmax(1) == int8.argmax(1)).mean())
        out[split] = row
    return out
