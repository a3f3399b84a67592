"""Realistic 12-megapixel phone JPEGs (4000x3000, quality 90, a few MB) drawn procedurally.

A synthetic returned item is rendered, enlarged to phone resolution and given sensor noise,
so the files decode and compress like real phone photos; they are cached under /tmp.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 4000, 3000
QUALITY = 90
CACHE_DIR = Path("/tmp/returns-inspection-bench-photos")
# Sensor noise (std of 8-bit levels): what makes a real 12 MP JPEG weigh 3-6 MB, not 500 kB.
NOISE_SIGMA = 6.0
EXIF_MAKE, EXIF_MODEL, EXIF_DATETIME_ORIGINAL, EXIF_IFD = 0x010F, 0x0110, 0x9003, 0x8769


def render_phone_photo(*, index: int, seed: int = 4000) -> bytes:
    """One 4000x3000 JPEG of a synthetic returned item, with phone-like EXIF."""
    from training.synth import plan_photo, render_photo

    plan = plan_photo(index=index, seed=seed)
    scene, _ = render_photo(plan=plan, seed=seed + index, size=1024)
    square = cv2.resize(scene, (HEIGHT, HEIGHT), interpolation=cv2.INTER_CUBIC)
    side = (WIDTH - HEIGHT) // 2
    canvas = cv2.copyMakeBorder(square, 0, 0, side, side, cv2.BORDER_REFLECT_101)
    rng = np.random.default_rng(seed + index)
    noise = np.asarray(rng.normal(0.0, NOISE_SIGMA, size=canvas.shape), dtype=np.float32)
    noisy = canvas.astype(np.float32) + noise
    pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[EXIF_MAKE] = "Apple"
    exif[EXIF_MODEL] = "iPhone 15"
    exif.get_ifd(EXIF_IFD)[EXIF_DATETIME_ORIGINAL] = datetime.now(UTC).strftime("%Y:%m:%d %H:%M:%S")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=QUALITY, exif=exif.tobytes())
    return buffer.getvalue()


def phone_photos(count: int, *, seed: int = 4000) -> list[bytes]:
    """`count` distinct 12 MP JPEGs, rendered once and cached on disk."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    photos = []
    for index in range(count):
        path = CACHE_DIR / f"phone_{seed}_{index:03d}_q{QUALITY}_n{NOISE_SIGMA:g}.jpg"
        if not path.exists():
            data = render_phone_photo(index=index, seed=seed)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            log.info("rendered %s (%.1f MB)", path.name, len(data) / 1e6)
        photos.append(path.read_bytes())
    return photos
