"""Predictors: one inference contract (pre_process -> forward -> post_process) and its back ends.

`OnnxGrader` and `OnnxDefectDetector` run exported models with ONNX Runtime; `StaticGrader`
is an in-memory fake used only by unit tests that isolate the aggregation rules.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from inspection.errors import ServiceUnavailable
from inspection.grading.batching import GraderBatcher
from inspection.grading.model_card import ModelCard, file_sha256, load_card
from inspection.grading.preprocess import Letterbox, letterbox, to_model_input
from inspection.grading.types import GRADES, Defect, Severity
from inspection.settings import ModelSettings

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_PREFERENCE = (TENSORRT, CUDA, CPU)
PROVIDER_ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}

# Ultralytics' own predict() defaults, so our boxes match what the training team sees.
DEFAULT_CONFIDENCE = 0.25
DEFAULT_IOU = 0.7
MAX_DETECTIONS = 300
# Severity from the share of the photo a defect covers. A defect that breaks function or
# safety (STRUCTURAL_DEFECTS) is one step worse than a cosmetic one of the same size.
MINOR_MAX_AREA = 0.01  # under 1 % of the photo: a blemish seen only up close
MODERATE_MAX_AREA = 0.05  # under 5 %: visible at arm's length
STRUCTURAL_DEFECTS = frozenset(
    {"crack", "broken", "tear", "hole", "missing_part", "shatter", "water_damage"}
)
SEVERITIES: tuple[Severity, ...] = ("minor", "moderate", "severe")


def choose_providers(requested: str, available: list[str]) -> list[str]:
    """Picks ONNX Runtime execution providers, best first, with CPU as the last resort.

    "auto" prefers TensorRT > CUDA > CPU among those available; otherwise a comma list of
    provider names or aliases (tensorrt, cuda, cpu); unavailable ones are skipped with a warning.

    Example:
        >>> choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
        ['CUDAExecutionProvider', 'CPUExecutionProvider']
    """
    if requested.strip().lower() in ("", "auto"):
        wanted = list(PROVIDER_PREFERENCE)
    else:
        wanted = [
            PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
            for name in requested.split(",")
            if name.strip()
        ]
    chosen: list[str] = []
    for provider in wanted:
        if provider in chosen:
            continue
        if provider in available or provider == CPU:
            chosen.append(provider)
        elif requested.strip().lower() not in ("", "auto"):
            log.warning("execution provider %s is not available here; skipping it", provider)
    if CPU not in chosen:
        chosen.append(CPU)  # every build of onnxruntime has it; a GPU failure falls back to it
    return chosen


@dataclass
class PreparedBatch:
    """Model input tensor plus what post-processing needs to map results back per image."""

    tensor: np.ndarray
    meta: list[Any] = field(default_factory=list)


class Predictor(ABC, Generic[ResultT]):
    """The inference contract: pre_process -> forward -> post_process; predict wraps all three."""

    @abstractmethod
    def pre_process(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Turns RGB uint8 images into one input batch."""

    @abstractmethod
    def forward(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        """Runs the model on a batch; returns named outputs."""

    @abstractmethod
    def post_process(self, outputs: dict[str, np.ndarray], batch: PreparedBatch) -> list[ResultT]:
        """Turns raw outputs into one result per image."""

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[ResultT]:
        """Predicts several images in one model call."""
        if not images:
            return []
        batch = self.pre_process(images)
        return self.post_process(self.forward(batch), batch)

    def predict(self, image: np.ndarray) -> ResultT:
        """Predicts one image."""
        return self.predict_batch([image])[0]


@dataclass(frozen=True)
class GraderResult:
    """Calibrated grade probabilities (in GRADES order) and the pooled embedding."""

    probabilities: dict[str, float]
    logits: list[float]
    embedding: list[float] | None

    @property
    def grade(self) -> str:
        """The most probable grade."""
        return max(self.probabilities, key=lambda g: self.probabilities[g])


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, numerically stable."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


class OnnxModel:
    """An ONNX Runtime session built from a model folder (model.onnx + model_card.yaml)."""

    def __init__(self, *, model_dir: Path, settings: ModelSettings, task: str) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        try:
            self.card: ModelCard = load_card(model_dir)
        except FileNotFoundError as exc:
            raise ServiceUnavailable(
                f"model card missing in {model_dir}",
                hint="run the training pipeline (`make models`) or set INSPECTION_MODEL_DIR to "
                "a folder with grader/ and detector/ model folders",
            ) from exc
        if self.card.task != task:
            raise ServiceUnavailable(
                f"{model_dir} holds a {self.card.task} model, expected {task}",
                hint="check INSPECTION_MODEL_GRADER / INSPECTION_MODEL_DETECTOR",
            )
        path = model_dir / self.card.file
        if not path.exists():
            raise ServiceUnavailable(
                f"model file {path} is missing",
                hint="run the training pipeline (`make models`) or set INSPECTION_MODEL_DIR",
            )
        if self.card.sha256 and file_sha256(path) != self.card.sha256:
            # Serving a model whose card describes another file would mix up preprocessing.
            raise ServiceUnavailable(
                f"{path} does not match the sha256 in its model card",
                hint="re-export the model with the training pipeline so card and file agree",
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
        )
        providers = choose_providers(settings.providers, ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        batch_dim = self.session.get_inputs()[0].shape[0]
        # Exports with a fixed batch of 1 (typical for detectors) are fed one image at a time.
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.provider = self.session.get_providers()[0]
        log.info(
            "loaded %s model %s on %s",
            task,
            self.card.version_label,
            self.provider,
            extra={"ctx_model": self.card.version_label, "ctx_provider": self.provider},
        )

    def run_outputs(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Runs the session (thread-safe in ONNX Runtime); outputs in `output_names` order.

        Exports with a fixed batch size are fed in chunks of that size.
        """
        chunk = self.fixed_batch or len(tensor)
        parts = [
            self.session.run(self.output_names, {self.input_name: tensor[i : i + chunk]})
            for i in range(0, len(tensor), chunk)
        ]
        if len(parts) == 1:
            return [np.asarray(out) for out in parts[0]]
        return [
            np.concatenate([part[k] for part in parts], axis=0)
            for k in range(len(self.output_names))
        ]

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the session; outputs by name."""
        return dict(zip(self.output_names, self.run_outputs(tensor), strict=True))


class OnnxGrader(Predictor[GraderResult]):
    """The grade classifier: probabilities = softmax(logits / T) with T from the model card."""

    def __init__(self, *, model_dir: Path, settings: ModelSettings) -> None:
        self.model = OnnxModel(model_dir=model_dir, settings=settings, task="classify")
        self.card = self.model.card
        if sorted(self.card.classes) != sorted(GRADES):
            raise ServiceUnavailable(
                f"grader classes {self.card.classes} are not the grades {list(GRADES)}",
                hint="export the grader with classes resell, refurbish, reject",
            )
        self._order = [self.card.classes.index(g) for g in GRADES]
        # The card's `outputs` describes tensors by name; classifiers name theirs like this.
        self._logits_name = "logits"
        self._embedding_name = "embedding"
        if self._logits_name not in self.model.output_names:
            raise ServiceUnavailable(
                f"grader has no '{self._logits_name}' output (has {self.model.output_names})",
                hint="export the grader with outputs named 'logits' and 'embedding'",
            )
        self.temperature = (
            self.card.calibration.temperature
            if self.card.calibration.method == "temperature"
            else 1.0
        )
        # Concurrent requests' photos share one model call (settings.max_batch=1 turns it off).
        self.batcher = GraderBatcher(
            run_batch=self.model.run_outputs,
            max_batch=settings.max_batch,
            wait_ms=settings.batch_wait_ms,
            name=self.card.version_label,
        )

    @property
    def version(self) -> str:
        """E.g. `grader@3`."""
        return self.card.version_label

    @property
    def provider(self) -> str:
        """The execution provider the session runs on."""
        return self.model.provider

    def pre_process(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Preprocesses with the card's parameters through the shared to_model_input."""
        spec = self.card.preprocessing
        return PreparedBatch(tensor=np.stack([to_model_input(im, spec) for im in images]))

    def forward(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        """Runs the ONNX session through the micro-batcher."""
        outputs = self.batcher.submit(batch.tensor)
        return dict(zip(self.model.output_names, outputs, strict=True))

    def close(self) -> None:
        """Stops the micro-batcher's worker after queued batches ran."""
        self.batcher.close()

    def post_process(
        self, outputs: dict[str, np.ndarray], batch: PreparedBatch
    ) -> list[GraderResult]:
        """Calibrated softmax, reordered to GRADES, plus the embedding rows."""
        logits = outputs[self._logits_name][:, self._order]
        probabilities = softmax(logits, self.temperature)
        embeddings = outputs.get(self._embedding_name)
        results = []
        for i in range(len(logits)):
            embedding = None
            if embeddings is not None:
                embedding = embeddings[i].reshape(-1).astype(np.float32).tolist()
            results.append(
                GraderResult(
                    probabilities={
                        g: float(p) for g, p in zip(GRADES, probabilities[i], strict=True)
                    },
                    logits=[float(v) for v in logits[i]],
                    embedding=embedding,
                )
            )
        return results


@dataclass(frozen=True)
class DetectorMeta:
    """Per-image mapping from model input back to the photo."""

    box: Letterbox
    width: int
    height: int


def severity_for(*, defect_type: str, area_fraction: float) -> Severity:
    """Severity from size and type: <1 % minor, <5 % moderate, else severe; structural +1 step.

    Example:
        >>> severity_for(defect_type="scratch", area_fraction=0.004)
        'minor'
        >>> severity_for(defect_type="crack", area_fraction=0.004)
        'moderate'
    """
    level = 0 if area_fraction < MINOR_MAX_AREA else 1 if area_fraction < MODERATE_MAX_AREA else 2
    if defect_type.lower() in STRUCTURAL_DEFECTS:
        level = min(level + 1, 2)
    return SEVERITIES[level]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on xyxy boxes; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_detections(
    output: np.ndarray,
    *,
    num_classes: int,
    confidence: float = DEFAULT_CONFIDENCE,
    iou: float = DEFAULT_IOU,
    max_detections: int = MAX_DETECTIONS,
) -> list[np.ndarray]:
    """Decodes a YOLO ONNX output batch into per-image [K, 6] arrays (x1, y1, x2, y2, score, cls).

    Two layouts are understood, in model-input pixels:
    - end-to-end `[N, M, 6]` (YOLO26 / YOLOv10 export): boxes already xyxy, NMS-free;
    - raw `[N, 4 + nc, A]` (YOLO11 / v8 export): cx, cy, w, h and per-class scores for each of
      A anchors; thresholded and class-wise NMS'd here, as ultralytics' predict does.
    """
    if output.ndim != 3:
        raise ValueError(f"detector output must be 3-D, got shape {output.shape}")
    raw = output.shape[1] == 4 + num_classes and output.shape[2] != 6
    end_to_end = not raw and output.shape[2] == 6
    if not raw and not end_to_end:
        if output.shape[1] == 4 + num_classes:
            raw = True
        else:
            raise ValueError(
                f"detector output {output.shape} is neither [N, M, 6] nor [N, 4+{num_classes}, A]"
            )
    results = []
    for rows in output:
        if raw:
            preds = rows.T  # [A, 4 + nc]
            scores_all = preds[:, 4:]
            classes = scores_all.argmax(axis=1)
            scores = scores_all[np.arange(len(preds)), classes]
            keep = scores >= confidence
            preds, scores, classes = preds[keep], scores[keep], classes[keep]
            cx, cy, w, h = preds[:, 0], preds[:, 1], preds[:, 2], preds[:, 3]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            # Class offset trick: one NMS pass that never lets a crack suppress a stain.
            offset = classes[:, None].astype(np.float32) * 7680.0
            kept = nms(boxes + offset, scores, iou)[:max_detections]
            decoded = np.concatenate(
                [boxes[kept], scores[kept, None], classes[kept, None].astype(np.float32)], axis=1
            )
        else:
            decoded = rows[rows[:, 4] >= confidence]
            decoded = decoded[decoded[:, 4].argsort()[::-1]][:max_detections]
        results.append(decoded.astype(np.float32).reshape(-1, 6))
    return results


class OnnxDefectDetector(Predictor[list[Defect]]):
    """A YOLO defect detector exported to ONNX by ultralytics, decoded without ultralytics.

    Input: letterboxed RGB scaled to 0..1 (the card's mean 0 / std 1), as ultralytics trains.
    """

    def __init__(
        self,
        *,
        model_dir: Path,
        settings: ModelSettings,
        confidence: float = DEFAULT_CONFIDENCE,
        iou: float = DEFAULT_IOU,
    ) -> None:
        self.model = OnnxModel(model_dir=model_dir, settings=settings, task="detect")
        self.card = self.model.card
        self.classes = list(self.card.classes)
        self.confidence = confidence
        self.iou = iou
        # ultralytics names the detection tensor "output0"; segmentation exports add more.
        names = self.model.output_names
        self._output_name = "output0" if "output0" in names else names[0]

    @property
    def version(self) -> str:
        """E.g. `detector@2`."""
        return self.card.version_label

    @property
    def provider(self) -> str:
        """The execution provider the session runs on."""
        return self.model.provider

    def pre_process(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Letterboxes each image, then normalises it with the card's (shared) preprocessing."""
        spec = self.card.preprocessing
        tensors, metas = [], []
        for image in images:
            canvas, box = letterbox(image, spec.size, spec.pad_value)
            # The canvas is already size x size, so to_model_input only normalises it.
            tensors.append(to_model_input(canvas, spec))
            metas.append(DetectorMeta(box=box, width=image.shape[1], height=image.shape[0]))
        return PreparedBatch(tensor=np.stack(tensors), meta=metas)

    def forward(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        """Runs the ONNX session."""
        return self.model.run(batch.tensor)

    def post_process(
        self, outputs: dict[str, np.ndarray], batch: PreparedBatch
    ) -> list[list[Defect]]:
        """Decodes boxes, maps them to photo fractions and rates their severity."""
        decoded = decode_detections(
            outputs[self._output_name],
            num_classes=len(self.classes),
            confidence=self.confidence,
            iou=self.iou,
        )
        return [
            defects_from_boxes(rows, meta=meta, classes=self.classes)
            for rows, meta in zip(decoded, batch.meta, strict=True)
        ]


def defects_from_boxes(
    rows: np.ndarray, *, meta: DetectorMeta, classes: Sequence[str]
) -> list[Defect]:
    """Maps decoded [K, 6] input-pixel boxes to Defects with photo-fraction boxes."""
    defects = []
    for x1, y1, x2, y2, score, cls in rows.tolist():
        box = meta.box
        fx1 = min(max((x1 - box.pad_x) / box.scale / meta.width, 0.0), 1.0)
        fx2 = min(max((x2 - box.pad_x) / box.scale / meta.width, 0.0), 1.0)
        fy1 = min(max((y1 - box.pad_y) / box.scale / meta.height, 0.0), 1.0)
        fy2 = min(max((y2 - box.pad_y) / box.scale / meta.height, 0.0), 1.0)
        area = max(fx2 - fx1, 0.0) * max(fy2 - fy1, 0.0)
        if area <= 0:
            continue  # a box entirely in the padding says nothing about the item
        index = int(cls)
        defect_type = classes[index] if 0 <= index < len(classes) else f"class_{index}"
        defects.append(
            Defect(
                defect_type=defect_type,
                confidence=round(float(score), 4),
                box=(round(fx1, 4), round(fy1, 4), round(fx2, 4), round(fy2, 4)),
                area_fraction=round(area, 5),
                severity=severity_for(defect_type=defect_type, area_fraction=area),
            )
        )
    return defects


class StaticGrader(Predictor[GraderResult]):
    """A fake grader that returns preset probabilities in turn. Unit tests of aggregation only."""

    def __init__(self, probabilities: Sequence[dict[str, float]]) -> None:
        self._queue = list(probabilities)
        self._lock = threading.Lock()
        self.version = "static@1"

    def pre_process(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Keeps only the count: the fake looks at no pixels."""
        return PreparedBatch(tensor=np.zeros((len(images), 1), np.float32))

    def forward(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        """Pops one preset row per image."""
        with self._lock:
            rows = [self._queue.pop(0) for _ in range(len(batch.tensor))]
        table = np.array([[row[g] for g in GRADES] for row in rows], dtype=np.float64)
        return {"probabilities": table}

    def post_process(
        self, outputs: dict[str, np.ndarray], batch: PreparedBatch
    ) -> list[GraderResult]:
        """Wraps the preset rows."""
        return [
            GraderResult(
                probabilities={g: float(p) for g, p in zip(GRADES, row, strict=True)},
                logits=[float(np.log(max(p, 1e-12))) for p in row],
                embedding=None,
            )
            for row in outputs["probabilities"]
        ]
