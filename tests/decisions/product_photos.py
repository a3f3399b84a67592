"""Synthetic product photos for same-unit tests, drawn with OpenCV.

A "product" is a textured face (printed pattern, label text) that each seed draws differently;
a "photo" places it on a background under some angle and light, as a customer's phone or the
station camera would. Re-photographing one product with another angle and light keeps its
surface; a different seed is a different object.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_SIZE = (360, 480)  # height, width of the product's printed face
_WORDS = ("ACME", "ULTRA", "PRO", "MAX", "LITE", "500ml", "No.7", "ECO", "XL", "BOOST")


def product_face(seed: int) -> np.ndarray:
    """The printed face of one product: RGB uint8 with shapes, stripes and label text."""
    rng = np.random.default_rng(seed)
    height, width = FACE_SIZE
    face = np.empty((height, width, 3), np.uint8)
    face[:] = rng.integers(120, 230, size=3)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        kind = rng.integers(0, 4)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            cv2.circle(face, (x, y), int(rng.integers(5, 40)), colour, int(rng.choice([-1, 2, 4])))
        elif kind == 1:
            x2, y2 = x + int(rng.integers(10, 90)), y + int(rng.integers(10, 60))
            cv2.rectangle(face, (x, y), (x2, y2), colour, int(rng.choice([-1, 2, 3])))
        elif kind == 2:
            x2, y2 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(face, (x, y), (x2, y2), colour, int(rng.integers(1, 5)))
        else:
            word = str(rng.choice(_WORDS))
            cv2.putText(
                face,
                word,
                (x, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.6, 1.6)),
                colour,
                2,
            )
    return face


def photograph(
    face: np.ndarray,
    *,
    seed: int,
    angle_deg: float = 0.0,
    tilt: float = 0.0,
    brightness: float = 1.0,
    background: tuple[int, int, int] = (200, 200, 205),
    size: tuple[int, int] = (720, 960),
) -> np.ndarray:
    """A photo of `face` on a plain background under a rotation, perspective tilt and light."""
    rng = np.random.default_rng(seed)
    height, width = size
    fh, fw = face.shape[:2]
    # Smooth background with a light gradient, like a table under a lamp.
    ramp = np.linspace(0.85, 1.1, width, dtype=np.float32)[None, :, None]
    photo = np.clip(np.full((height, width, 3), background, np.float32) * ramp, 0, 255)
    centre = np.array([width / 2, height / 2], np.float32)
    half = np.array([fw / 2, fh / 2], np.float32) * 1.1
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * half
    corners[:2, 0] *= 1.0 - tilt  # top edge shorter: the camera looks down at an angle
    theta = np.deg2rad(angle_deg)
    rotation = np.array(
        [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32
    )
    target = corners @ rotation.T + centre
    source = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float32)
    warp = cv2.getPerspectiveTransform(source, target)
    placed = cv2.warpPerspective(face.astype(np.float32), warp, (width, height))
    mask = cv2.warpPerspective(np.ones((fh, fw), np.float32), warp, (width, height))[..., None]
    photo = photo * (1 - mask) + placed * mask
    photo = photo * brightness + rng.normal(0, 4, photo.shape)
    photo = cv2.GaussianBlur(np.clip(photo, 0, 255).astype(np.uint8), (3, 3), 0)
    return photo
