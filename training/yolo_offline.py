"""Imports ultralytics strictly offline: no hub, no auto-install, no settings sync, local config.

Every module that needs ultralytics calls `load_ultralytics()` instead of importing it, so the
environment is set before ultralytics reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_ultralytics(*, config_dir: Path | None = None) -> ModuleType:
    """Returns the ultralytics module configured never to touch the network."""
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if config_dir is not None or "YOLO_CONFIG_DIR" not in os.environ:
        target = config_dir or REPO_ROOT / ".ultralytics"
        target.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(target)
    import ultralytics
    from ultralytics import settings

    settings.update({"sync": False})
    return ultralytics
