"""The `training` command line: each command runs for real and fails with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.grading.model_card import load_card
from training.cli import app

runner = CliRunner()


def test_synth_command_writes_dataset_and_provenance(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(
        app, ["synth", "--out", str(out), "--n", "6", "--seed", "1", "--size", "96"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["count"] == 6
    assert (out / "contact_sheet.png").exists()
    assert "synth --out" in (out / "PROVENANCE.txt").read_text()


def test_promote_command_bumps_version(grader_model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for expected in (1, 2):
        result = runner.invoke(app, ["promote", str(grader_model_dir), "--to", str(models)])
        assert result.exit_code == 0, result.output
        assert f"grader@{expected}" in result.output
    assert load_card(models / "grader").version == 2


def test_clear_errors_for_missing_inputs(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train-grader", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "has no grades.csv" in result.output
    result = runner.invoke(app, ["promote", str(tmp_path), "--to", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "model_card.yaml not found" in result.output
    result = runner.invoke(
        app,
        ["import", "--src", str(tmp_path / "nope"), "--grades", "x.yaml", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_train_anomaly_is_registered_and_runs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-anomaly", "--out", str(tmp_path / "anomaly")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "anomaly" / "anomaly.json").exists()


def test_quantize_command_writes_an_int8_grader_the_service_loads(
    models_dir: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    import shutil

    from inspection.grading.model_card import file_sha256
    from inspection.grading.pipeline import GradingPipeline
    from tests.fixtures.images import make_photo_bytes
    from tests.grading.conftest import settings_for

    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    result = runner.invoke(
        app,
        [
            "quantize",
            "--model",
            str(models / "grader"),
            "--calibration",
            str(synthetic_dataset / "images"),
            "--out",
            str(models / "grader-int8"),
            "--max-images",
            "16",
            "--evaluate-on",
            str(synthetic_dataset),
        ],
    )
    assert result.exit_code == 0, result.output
    fp32, card = load_card(models / "grader"), load_card(models / "grader-int8")
    assert card.precision == "int8" and "int8" in card.arch
    # The card describes its own file (the service refuses a model whose sha256 differs) and
    # does not pass the fp32 model's split metrics off as the INT8 model's.
    assert card.sha256 == file_sha256(models / "grader-int8" / card.file) != fp32.sha256
    assert card.metrics["fp32"]["test"] == fp32.metrics["test"]
    assert "--evaluate-on" in card.metrics["quantization"]["command"]
    for split in ("val", "test"):
        measured = card.metrics[split]
        assert measured["count"] > 0 and 0.0 <= measured["argmax_agreement"] <= 1.0
        assert measured["fp32_macro_f1"] == pytest.approx(fp32.metrics[split]["macro_f1"])

    pipeline = GradingPipeline.from_settings(settings=settings_for(models, grader="grader-int8"))
    try:
        photo = pipeline.intake(
            data=make_photo_bytes(seed=3, kind="mug"), content_type="image/jpeg", filename="a.jpg"
        )
        item = pipeline.grade_photos(photos=[photo], category=None)
        # Audit rows must tell INT8 grades from fp32 ones of the same version.
        assert pipeline.model_versions["grader"] == f"grader@{fp32.version}+int8"
    finally:
        pipeline.close()
    assert item.photos[0].model_version == f"grader@{fp32.version}+int8"
    assert sum(item.photos[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_quantize_command_refuses_a_folder_without_a_card(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["quantize", "--model", str(tmp_path), "--calibration", str(tmp_path), "--out", "x"],
    )
    assert result.exit_code == 2
    assert "no model_card.yaml" in result.output
