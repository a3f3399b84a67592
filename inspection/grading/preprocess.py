"""The one preprocessing function shared by the service and the training pipeline.

Training imports `to_model_input` for validation/export and the service uses it for every
photo, so the tensor a model sees in production is the tensor it was evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.grading.model_card import Preprocessing


@dataclass(frozen=True)
class Letterbox:
    """How a letterboxed image maps back to the original: x_orig = (x - pad_x) / scale."""

    scale: float
    pad_x: float
    pad_y: float


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    # INTER_AREA when shrinking keeps thin defects (scratches, cracks) visible.
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def letterbox(image: np.ndarray, size: int, pad_value: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resizes keeping the aspect ratio and pads to size x size."""
    h, w = image.shape[:2]
    if h == w == size:  # already letterboxed (the detector letterboxes before normalising)
        return image, Letterbox(scale=1.0, pad_x=0.0, pad_y=0.0)
    scale = min(size / h, size / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = _resize(image, new_w, new_h)
    canvas = np.full((size, size, 3), pad_value, dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(scale=scale, pad_x=float(pad_x), pad_y=float(pad_y))


def to_model_input(image: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Turns an RGB uint8 HxWx3 photo into a float32 3xSxS tensor as the card prescribes.

    Example:
        >>> x = to_model_input(np.zeros((480, 640, 3), np.uint8), Preprocessing(size=224))
        >>> x.shape, x.dtype
        ((3, 224, 224), dtype('float32'))
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.shape} {image.dtype}")
    size = spec.size
    if spec.mode == "squash":
        pixels = _resize(image, size, size)
    elif spec.mode == "letterbox":
        pixels, _ = letterbox(image, size, spec.pad_value)
    else:
        resize = spec.resize or round(size * 256 / 224)
        h, w = image.shape[:2]
        scale = resize / min(h, w)
        resized = _resize(image, max(size, round(w * scale)), max(size, round(h * scale)))
        top = (resized.shape[0] - size) // 2
        left = (resized.shape[1] - size) // 2
        pixels = resized[top : top + size, left : left + size]
    # One converting transpose and two in-place passes: (x / 255 - mean) / std computed as
    # x * (1 / (255 std)) - mean / std; equal to float32 rounding, ~10x less time at 640 px.
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    tensor *= 1.0 / (255.0 * std)
    tensor -= mean / std
    return tensor
