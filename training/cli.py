"""The `training` command: synthetic data, import, train, evaluate and promote models.

Every trained model's card records the exact command line that produced it.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Training pipeline for the returns grader and defect detector (offline, CPU-friendly).",
    no_args_is_help=True,
)
log = logging.getLogger(__name__)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _command_line(ctx: typer.Context) -> str:
    """The running command with every option spelled out (defaults too), for model cards."""
    parts = ["training", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None:
            continue
        values = list(value) if isinstance(value, list | tuple) else [value]
        if param.param_type_name == "argument":
            parts.extend(str(v) for v in values)
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if value:
                parts.append(flag)
            continue
        for v in values:
            parts.extend([flag, str(v)])
    return " ".join(shlex.quote(p) for p in parts)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def synth(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output dataset folder.")],
    n: Annotated[int, typer.Option(help="Number of photos.", min=1)] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed -> identical files).")] = 0,
    size: Annotated[int, typer.Option(help="Photo side in pixels.", min=64, max=2048)] = 320,
) -> None:
    """Generates synthetic photos of returned goods with graded, boxed defects."""
    from training.dataset import write_provenance
    from training.synth import generate

    summary = generate(out_dir=out, n=n, seed=seed, size=size, progress=True)
    write_provenance(dataset_dir=out, command=_command_line(ctx))
    typer.echo(
        json.dumps(
            {
                "out": str(summary.out_dir),
                "count": summary.count,
                "grades": summary.grades,
                "splits": summary.splits,
                "defects": summary.defects,
                "contact_sheet": str(summary.contact_sheet),
                "data_yaml": str(summary.data_yaml),
            },
            indent=2,
        )
    )


@app.command("import")
def import_(
    ctx: typer.Context,
    src: Annotated[
        Path, typer.Option(help="Source tree: a folder per class (masks/VOC/YOLO beside photos).")
    ],
    grades: Annotated[
        Path, typer.Option(help="Mapping YAML: class -> grade (see datasets/real/).")
    ],
    out: Annotated[Path, typer.Option(help="Output dataset folder.")],
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    val: Annotated[float, typer.Option(help="Validation share.", min=0.0, max=0.5)] = 0.15,
    test: Annotated[float, typer.Option(help="Test share.", min=0.0, max=0.5)] = 0.15,
    annotations: Annotated[
        Path | None, typer.Option(help="Folder with VOC .xml / YOLO .txt named like the photos.")
    ] = None,
    phash_distance: Annotated[
        int, typer.Option(help="Near-duplicate threshold in perceptual-hash bits (-1: exact only).")
    ] = 4,
) -> None:
    """Imports labelled real photos; duplicates never straddle train/val/test."""
    from training.importing import import_dataset

    if not src.is_dir():
        _fail(f"source folder {src} does not exist")
    if not grades.is_file():
        _fail(
            f"mapping file {grades} does not exist "
            "(example: datasets/real/magnetic-tile.grades.yaml)"
        )
    try:
        summary = import_dataset(
            src=src, mapping_file=grades, out_dir=out, seed=seed,
            shares={"train": 1 - val - test, "val": val, "test": test},
            annotations=annotations, phash_distance=phash_distance, progress=True,
        )  # fmt: skip
    except ValueError as exc:
        _fail(str(exc))
        return
    from training.dataset import write_provenance

    write_provenance(dataset_dir=out, command=_command_line(ctx))
    typer.echo(json.dumps({**summary.__dict__, "out_dir": str(summary.out_dir)}, indent=2))


@app.command("train-grader")
def train_grader_cmd(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Option(help="Dataset folder(s); repeat to combine (e.g. + QA corrections)."),
    ],
    out: Annotated[Path, typer.Option(help="Run folder (model.onnx, model_card.yaml, metrics).")],
    arch: Annotated[
        str, typer.Option(help="efficientnet-lite0 | yolo11n-cls")
    ] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    size: Annotated[int, typer.Option(help="Input side in pixels.", min=32, max=1024)] = 224,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(help="Head learning rate (backbone 0.3x).")] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    name: Annotated[str, typer.Option(help="Model name in the card.")] = "grader",
    freeze_blocks: Annotated[
        int,
        typer.Option(
            help="Partial fine-tuning: keep the stem and the first N of 16 blocks frozen and "
            "cache their outputs (about 5x faster on CPU); 0 trains everything.",
            min=0,
            max=15,
        ),
    ] = 0,
    max_train: Annotated[
        int | None, typer.Option(help="Use a stratified subset of this many training photos.")
    ] = None,
    defect_map: Annotated[
        bool,
        typer.Option(
            help="Train a defect-map head on the datasets' defect boxes and let its strongest "
            "cell feed the grade (full fine-tuning only; the ONNX outputs do not change)."
        ),
    ] = True,
    ema_decay: Annotated[
        float,
        typer.Option(
            help="Per-step moving average of the weights that training scores and keeps "
            "(0 turns it off).",
            min=0.0,
            max=0.9999,
        ),
    ] = 0.99,
) -> None:
    """Fine-tunes the grader, calibrates it, exports ONNX and writes the model card."""
    from training.grader import train_grader

    if arch not in ("efficientnet-lite0", "yolo11n-cls"):
        _fail(f"unknown --arch {arch!r}: use efficientnet-lite0 or yolo11n-cls")
    for folder in data:
        if not (folder / "grades.csv").exists():
            _fail(f"{folder} has no grades.csv: make it with `training synth` or `training import`")
    run = train_grader(
        data_dirs=data, out_dir=out, arch=arch, epochs=epochs, size=size,  # type: ignore[arg-type]
        batch_size=batch_size, lr=lr, seed=seed, threads=threads, name=name,
        command=_command_line(ctx), freeze_blocks=freeze_blocks, max_train=max_train,
        defect_map=defect_map, ema_decay=ema_decay,
    )  # fmt: skip
    report = {
        "model_dir": str(run.model_dir),
        "metrics": run.card.metrics,
        "calibration": run.card.calibration.model_dump(),
    }
    typer.echo(json.dumps(report, indent=2))


@app.command("train-detector")
def train_detector_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Dataset folder with data.yaml.")],
    out: Annotated[Path, typer.Option(help="Run folder.")],
    model: Annotated[
        str, typer.Option(help="Ultralytics model .yaml (trained from scratch).")
    ] = "yolo26n.yaml",
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    imgsz: Annotated[int, typer.Option(min=32, max=1280)] = 320,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option()] = 2,
    hours: Annotated[
        float | None, typer.Option(help="Wall-clock budget; epochs are re-planned to fit it.")
    ] = None,
    name: Annotated[str, typer.Option()] = "detector",
) -> None:
    """Trains a YOLO defect detector offline, exports ONNX and writes the model card."""
    from training.detector import train_detector

    if not (data / "data.yaml").exists():
        _fail(f"{data} has no data.yaml: make it with `training synth` or `training import`")
    run = train_detector(
        data_dir=data, out_dir=out, model_cfg=model, epochs=epochs, imgsz=imgsz, batch=batch,
        seed=seed, threads=threads, hours=hours, name=name, command=_command_line(ctx),
    )  # fmt: skip
    typer.echo(json.dumps({"model_dir": str(run.model_dir), "metrics": run.metrics}, indent=2))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="Model folder (model.onnx + model_card.yaml).")],
    data: Annotated[list[Path], typer.Option(help="Dataset folder(s).")],
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default MODEL/evaluation).")
    ] = None,
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
) -> None:
    """Evaluates the exported ONNX model: metrics JSON and PNG plots."""
    from training.evaluate import evaluate_model

    if not (model / "model_card.yaml").exists():
        _fail(f"{model} has no model_card.yaml")
    try:
        report = evaluate_model(model_dir=model, data_dirs=data, out_dir=out, split=split)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    headline = {k: report[k] for k in ("model", "split", "count", "accuracy", "macro_f1",
                                       "resell_auroc", "ece", "map50") if k in report}  # fmt: skip
    typer.echo(json.dumps(headline, indent=2))


@app.command()
def promote(
    run: Annotated[Path, typer.Argument(help="Run folder written by train-grader/train-detector.")],
    to: Annotated[Path, typer.Option(help="Models folder the service reads.")] = Path("models"),
    name: Annotated[
        str | None, typer.Option(help="Target name (default: the card's name).")
    ] = None,
) -> None:
    """Copies a run's model into models/<name>/ as the next version."""
    from training.promote import promote as promote_run

    try:
        result = promote_run(run_dir=run, models_dir=to, name=name)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"promoted {run} -> {result.model_dir} as {result.name}@{result.version}"
        " (restart the service or POST /v1/admin/reload-models)"
    )


@app.command("import-corrections")
def import_corrections_cmd(
    ctx: typer.Context,
    database_url: Annotated[
        str, typer.Option(help="Service database (sqlite:///... or postgresql://...).")
    ],
    blob_dir: Annotated[Path, typer.Option(help="The service's photo blob store folder.")],
    out: Annotated[Path, typer.Option(help="Output dataset folder.")],
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
) -> None:
    """Turns QA relabels into a dataset folder; train it with --data OLD --data OUT."""
    from training.corrections import import_corrections
    from training.dataset import write_provenance

    if not blob_dir.is_dir():
        _fail(f"blob folder {blob_dir} does not exist (the service's INSPECTION_STORAGE blob dir)")
    summary = import_corrections(
        database_url=database_url, blob_dir=blob_dir, out_dir=out, seed=seed
    )
    write_provenance(dataset_dir=out, command=_command_line(ctx))
    typer.echo(json.dumps({**summary.__dict__, "out_dir": str(summary.out_dir)}, indent=2))


@app.command("train-anomaly")
def train_anomaly_cmd(
    out: Annotated[
        Path, typer.Option(help="Output folder (anomaly.json + model_card.yaml) or .json.")
    ],
    database_url: Annotated[
        str | None, typer.Option(help="Service database with order and return history.")
    ] = None,
    history_csv: Annotated[
        Path | None, typer.Option(help="History CSV instead of a database.")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Trains the returns-abuse anomaly model (engineer C's training.anomaly)."""
    from training.anomaly import train_anomaly

    if history_csv is not None and not history_csv.is_file():
        _fail(f"history CSV {history_csv} does not exist")
    try:
        path = train_anomaly(database_url=database_url, history_csv=history_csv, out=out, seed=seed)
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(f"anomaly model written to {path}")


@app.command()
def quantize(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option(help="fp32 grader folder (model.onnx + model_card.yaml).")],
    calibration: Annotated[
        Path, typer.Option(help="Folder of representative photos (e.g. a dataset's train images).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for the INT8 model and card.")],
    max_images: Annotated[int, typer.Option(min=8, help="Calibration photos used.")] = 256,
    evaluate_on: Annotated[
        list[Path] | None,
        typer.Option(
            help="Dataset folder(s) whose val and test splits measure the INT8 model against "
            "the fp32 one; the numbers go on the INT8 card."
        ),
    ] = None,
) -> None:
    """Quantises the grader to INT8 (QDQ, per-channel weights) for faster CPU inference."""
    from inspection.grading.model_card import load_card, write_card
    from training.quantize import quantize_grader

    if not (model / "model_card.yaml").is_file():
        _fail(f"{model} has no model_card.yaml: pass a folder written by train-grader")
    if not calibration.is_dir():
        _fail(f"calibration folder {calibration} does not exist")
    for folder in evaluate_on or ():
        if not (folder / "grades.csv").is_file():
            _fail(f"--evaluate-on {folder} has no grades.csv: pass a dataset folder")
    try:
        path = quantize_grader(
            model_dir=model,
            calibration_images=calibration,
            out_dir=out,
            max_calibration_images=max_images,
            command=_command_line(ctx),
        )
        if evaluate_on:
            from training.evaluate import compare_quantized

            # Measured on the written INT8 file, so its card is completed afterwards.
            splits = compare_quantized(
                fp32_dir=model, int8_dir=out, data_dirs=evaluate_on, splits=("val", "test")
            )
            typer.echo(json.dumps(splits, indent=2))
            card = load_card(out)
            metrics = {**card.metrics, **splits}
            metrics["quantization"] = {
                **metrics["quantization"],
                "evaluated_on": [str(d) for d in evaluate_on],
            }
            write_card(out, card.model_copy(update={"metrics": metrics}))
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(f"INT8 grader written to {path}")


if __name__ == "__main__":
    app()
