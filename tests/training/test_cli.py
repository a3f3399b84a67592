"""The `training` command line: each command runs for real and fails with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_quantize_command_writes_an_int8_grader_that_runs(
    grader_model_dir: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    import numpy as np
    import onnxruntime as ort

    out = tmp_path / "int8"
    result = runner.invoke(
        app,
        [
            "quantize",
            "--model",
            str(grader_model_dir),
            "--calibration",
            str(synthetic_dataset / "images"),
            "--out",
            str(out),
            "--max-images",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    card = load_card(out)
    assert "int8" in card.arch
    session = ort.InferenceSession(str(out / card.file), providers=["CPUExecutionProvider"])
    size = card.preprocessing.size
    logits, embedding = session.run(None, {"images": np.zeros((2, 3, size, size), np.float32)})
    assert logits.shape == (2, 3) and embedding.shape[0] == 2


def test_quantize_command_refuses_a_folder_without_a_card(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["quantize", "--model", str(tmp_path), "--calibration", str(tmp_path), "--out", "x"],
    )
    assert result.exit_code == 2
    assert "no model_card.yaml" in result.output
