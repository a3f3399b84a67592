"""Promotion: copy a trained run's ONNX model and card into models/<name>/ as the next version.

The service picks the new version up on restart or POST /v1/admin/reload-models. The copy is
staged beside the target and swapped in with renames, so a reader never sees half a model.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from inspection.grading.model_card import CARD_FILE, file_sha256, load_card, write_card

log = logging.getLogger(__name__)

# Files a model folder may carry besides model.onnx; the .pt is for benchmarks against ultralytics.
EXTRA_FILES = ("model.pt",)


@dataclass(frozen=True)
class Promotion:
    """Where a run went and as which version."""

    model_dir: Path
    name: str
    version: int
    previous_version: int | None
    sha256: str


def promote(
    *, run_dir: Path, models_dir: Path, name: str | None = None, include_pt: bool = True
) -> Promotion:
    """Copies run_dir's model into models_dir/<name> with card.version = previous + 1."""
    run_dir, models_dir = Path(run_dir), Path(models_dir)
    if not (run_dir / CARD_FILE).exists():
        raise FileNotFoundError(
            f"{run_dir / CARD_FILE} not found: promote a run folder of train-grader/train-detector"
        )
    card = load_card(run_dir)
    model_file = run_dir / card.file
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file} not found beside the card")
    digest = file_sha256(model_file)
    if card.sha256 and card.sha256 != digest:
        raise ValueError(f"{model_file} does not match its card's sha256: re-export the run")
    target_name = name or card.name
    target = models_dir / target_name
    previous = load_card(target).version if (target / CARD_FILE).exists() else None
    version = (previous or 0) + 1
    staging = models_dir / f".{target_name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(model_file, staging / card.file)
    if include_pt:
        for extra in EXTRA_FILES:
            if (run_dir / extra).exists():
                shutil.copy2(run_dir / extra, staging / extra)
    write_card(staging, card.model_copy(update={"version": version, "name": target_name}))
    old = models_dir / f".{target_name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    log.info("promoted %s to %s as %s@%d", run_dir, target, target_name, version)
    return Promotion(target, target_name, version, previous, digest)
