"""Calibration photos are decoded as the service would see them: small ones whole."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization", reason="onnxruntime quantisation tools missing")

from training.quantize import REDUCED_DECODE_MIN_SIDE, read_rgb


def _jpeg(path: Path, width: int, height: int) -> Path:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def test_small_photo_is_decoded_at_full_size(tmp_path: Path) -> None:
    # a 300 px tile halved to 150 px would calibrate on inputs blurrier than the service sees
    assert read_rgb(_jpeg(tmp_path / "tile.jpg", 300, 420)).shape == (420, 300, 3)


def test_large_photo_is_decoded_at_half_size(tmp_path: Path) -> None:
    side = REDUCED_DECODE_MIN_SIDE
    assert read_rgb(_jpeg(tmp_path / "phone.jpg", side * 2, side)).shape == (side // 2, side, 3)
