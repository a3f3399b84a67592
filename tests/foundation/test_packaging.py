"""The service installs and imports without torch or ultralytics (they are training extras)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("torch", "torchvision", "ultralytics", "efficientnet", "scikit-learn", "onnxslim")


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.lower()


def test_core_dependencies_exclude_training_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    leaked = sorted(n for n in core if n.startswith(TRAINING_ONLY))
    assert not leaked, f"core dependencies pull training packages: {leaked}"
    train = {_name(r) for r in project["optional-dependencies"]["train"]}
    assert {"torch", "ultralytics", "onnx"} <= train


def test_service_imports_with_torch_blocked() -> None:
    # A meta-path blocker makes any import of the training stack fail loudly in a fresh process.
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'torchvision', 'ultralytics', 'streamlit', 'sklearn'}:
            raise ImportError('blocked in the service: ' + name)
        return None
sys.meta_path.insert(0, Block())
import inspection.api.main
import inspection.cli
import inspection.grading.pipeline
import inspection.decisions.engine
print('ok')
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_app_object_is_importable() -> None:
    from inspection.api.main import app

    assert app.title == "Returns inspection"
    paths = app.openapi()["paths"]
    assert "/v1/grade" in paths
    assert "/v1/returns/{return_id}/refund" in paths
