"""Defect detector training: ultralytics YOLO from a .yaml, offline, exported to ONNX with a card.

The exported `model.onnx` is decoded in `inspection/grading/` without ultralytics; `model.pt`
stays beside it so benchmarks can compare with ultralytics' own predict.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inspection.grading.model_card import MODEL_FILE, ModelCard, Preprocessing, write_card
from training.dataset import DATA_YAML, describe_data
from training.yolo_offline import load_ultralytics

log = logging.getLogger(__name__)

PT_FILE = "model.pt"
DEFAULT_DETECTOR = "yolo26n.yaml"
FALLBACK_DETECTOR = "yolo11n.yaml"
ONNX_OPSET = 17


@dataclass
class DetectorRun:
    """What `train_detector` produced."""

    model_dir: Path
    card: ModelCard
    metrics: dict[str, Any]


def _class_names(data_yaml: Path) -> list[str]:
    names = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))["names"]
    if isinstance(names, dict):
        return [names[k] for k in sorted(names)]
    return list(names)


def _box_metrics(results: Any) -> dict[str, float]:
    d = getattr(results, "results_dict", None) or {}
    keys = {
        "metrics/mAP50(B)": "map50",
        "metrics/mAP50-95(B)": "map50_95",
        "metrics/precision(B)": "precision",
        "metrics/recall(B)": "recall",
    }
    return {short: round(float(d[k]), 4) for k, short in keys.items() if k in d}


def onnx_output_shape(path: Path) -> list[int | str]:
    """Shape of output0 as onnxruntime reports it."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(session.get_outputs()[0].shape)


def output_description(shape: list[int | str], n_classes: int) -> str:
    """How to read output0, decided from the exported shape."""
    dims = ",".join(str(d) for d in shape)
    if len(shape) == 3 and shape[-1] == 6:
        return (
            f"[{dims}] end-to-end (NMS-free): x1,y1,x2,y2 in letterboxed input pixels, score, "
            "class id; keep rows with score >= threshold"
        )
    return (
        f"[{dims}] per anchor: cx,cy,w,h in letterboxed input pixels then {n_classes} class "
        "scores; needs NMS"
    )


def train_detector(
    *,
    data_dir: Path,
    out_dir: Path,
    model_cfg: str = DEFAULT_DETECTOR,
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 16,
    seed: int = 0,
    threads: int = 2,
    patience: int = 100,
    hours: float | None = None,
    name: str = "detector",
    command: str = "",
    config_dir: Path | None = None,
) -> DetectorRun:
    """Trains YOLO from `model_cfg` (no pretrained weights) on a dataset folder, exports ONNX."""
    import torch

    torch.set_num_threads(threads)
    data_yaml = (Path(data_dir) / DATA_YAML).resolve()
    if not data_yaml.exists():
        raise FileNotFoundError(
            f"{data_yaml} not found: make the dataset with `training synth` or `training import`"
        )
    ultralytics = load_ultralytics(config_dir=config_dir)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _class_names(data_yaml)
    arch = Path(model_cfg).stem
    started = time.monotonic()
    model = ultralytics.YOLO(model_cfg)
    results = model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        workers=0,
        pretrained=False,
        amp=False,
        plots=False,
        seed=seed,
        deterministic=True,
        patience=patience,
        # a wall-clock budget (ultralytics re-plans the epochs to fit it) on a shared CPU
        **({"time": hours} if hours else {}),
        project=str(out_dir / "ultralytics"),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    train_seconds = time.monotonic() - started
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.exists():
        best = save_dir / "weights" / "last.pt"
    shutil.copyfile(best, out_dir / PT_FILE)
    metrics: dict[str, Any] = {
        "train_seconds": round(train_seconds, 1),
        "epochs": int(getattr(model.trainer, "epoch", epochs - 1)) + 1,
        "imgsz": imgsz,
        "val": _box_metrics(results),
    }
    trained = ultralytics.YOLO(str(out_dir / PT_FILE))
    if (Path(data_dir) / "images" / "test").is_dir() and any(
        (Path(data_dir) / "images" / "test").iterdir()
    ):
        test = trained.val(
            data=str(data_yaml), split="test", imgsz=imgsz, batch=batch, device="cpu",
            workers=0, plots=False, verbose=False, project=str(out_dir / "ultralytics"),
            name="test", exist_ok=True,
        )  # fmt: skip
        metrics["test"] = _box_metrics(test)
    # nms=False keeps YOLO26's NMS-free head: output0 is final boxes, no NMS in the service
    end2end = arch.startswith("yolo26")
    exported = Path(
        trained.export(
            format="onnx", imgsz=imgsz, opset=ONNX_OPSET, simplify=True, dynamic=False,
            device="cpu", nms=False if end2end else None,
        )
    )  # fmt: skip
    if exported.resolve() != (out_dir / MODEL_FILE).resolve():
        shutil.copyfile(exported, out_dir / MODEL_FILE)
    shape = onnx_output_shape(out_dir / MODEL_FILE)
    card = ModelCard(
        name=name,
        task="detect",
        arch=arch,
        classes=names,
        # YOLO takes RGB scaled to [0, 1]: mean 0 / std 1 after the shared /255
        preprocessing=Preprocessing(
            size=imgsz, mode="letterbox", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad_value=114
        ),
        calibration={"method": "none", "temperature": 1.0},  # type: ignore[arg-type]
        outputs={"output0": output_description(shape, len(names))},
        metrics=metrics,
        data=describe_data(dataset_dirs=[Path(data_dir)]),
        training_command=command,
        notes=(
            f"ultralytics {ultralytics.__version__} {model_cfg} from scratch (pretrained=False), "
            f"{metrics['epochs']} epoch(s) at imgsz {imgsz}, CPU; "
            f"input 'images' [1,3,{imgsz},{imgsz}]."
        ),
    )
    write_card(out_dir, card)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return DetectorRun(model_dir=out_dir, card=card, metrics=metrics)
