"""Photo quality gate: blur, exposure, size and "is there an item at all", with retake advice.

The gate flags and advises; it never blocks grading and never raises on a valid image. The
item grade uses the flags to decide whether a grade rests on good evidence.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.grading.types import QualityReport
from inspection.settings import QualitySettings

# Blur is measured at a fixed size so the threshold means the same for every camera.
WORKING_SIDE = 512
# Sharpness is the Laplacian variance of the most detailed tiles: a sharp item on a plain
# table is mostly flat, so a whole-image variance would call it blurry.
SHARPNESS_GRID = 8
SHARPNESS_PERCENTILE = 90
# Pixels this close to black/white carry no detail.
DARK_CLIP_LEVEL = 8
BRIGHT_CLIP_LEVEL = 247
# The item detector works at this size: enough to find an item, cheap to fit.
PRESENCE_SIDE = 128
BORDER_FRACTION = 0.08
# A pixel is "item" when it is this far (0..255, any channel) from the fitted background.
MIN_FOREGROUND_RESIDUAL = 20.0
MAX_BACKGROUND_NOISE = 10.0
# A close-up of the item fills the frame (no background ring to compare with): enough edges
# in the middle of the frame still count as "an item is there".
MIN_CENTRE_EDGE_DENSITY = 0.02

ADVICE = {
    "blurry": "blurry: hold the camera steady, tap the item to focus, and retake",
    "too_dark": "too dark: turn on a light or move to a window, then retake",
    "too_bright": "too bright: move out of direct sunlight or turn off the flash, then retake",
    "too_small": "too small: send the original photo from the camera, not a thumbnail",
    "no_product": "no item found: put the whole item in the middle of the frame and retake",
}


def assess_quality(
    *,
    image: np.ndarray,
    settings: QualitySettings,
    original_size: tuple[int, int] | None = None,
) -> QualityReport:
    """Checks one RGB uint8 photo and returns flags with advice a customer can follow.

    Args:
        image: the analysis image (RGB uint8, oriented).
        settings: thresholds.
        original_size: (width, height) of the uploaded photo; the analysis image may be
            smaller than what the customer sent, so "too small" is judged on this.
    """
    # Shrink once in colour; gray and the presence check both start from this copy.
    scaled = _fit(image, WORKING_SIDE)
    working = cv2.cvtColor(scaled, cv2.COLOR_RGB2GRAY) if scaled.ndim == 3 else scaled
    metrics: dict[str, float] = {}
    flags: list[str] = []

    sharpness, global_sharpness = _sharpness(working)
    metrics["sharpness"] = round(sharpness, 2)
    metrics["sharpness_global"] = round(global_sharpness, 2)
    if sharpness < settings.blur_threshold:
        flags.append("blurry")

    mean = float(working.mean())
    dark = float((working <= DARK_CLIP_LEVEL).mean())
    bright = float((working >= BRIGHT_CLIP_LEVEL).mean())
    metrics.update(
        luminance=round(mean, 2), dark_fraction=round(dark, 4), bright_fraction=round(bright, 4)
    )
    # Clipping alone can be a black phone or a white mug: it counts only with a dim/bright mean.
    if mean < settings.dark_threshold or (
        dark > settings.clipped_fraction and mean < 2 * settings.dark_threshold
    ):
        flags.append("too_dark")
    elif mean > settings.bright_threshold or (
        bright > settings.clipped_fraction and mean > (255 + settings.bright_threshold) / 2 - 30
    ):
        flags.append("too_bright")

    width, height = original_size or (image.shape[1], image.shape[0])
    metrics["short_side_px"] = float(min(width, height))
    if min(width, height) < settings.min_side_px:
        flags.append("too_small")

    product_fraction, centre_edges = _product_presence(scaled)
    metrics["product_fraction"] = round(product_fraction, 4)
    metrics["centre_edge_density"] = round(centre_edges, 4)
    # A dark or blown-out frame hides the item; say "light" rather than "no item".
    exposure_bad = "too_dark" in flags or "too_bright" in flags
    if (
        not exposure_bad
        and product_fraction < settings.min_product_fraction
        and centre_edges < MIN_CENTRE_EDGE_DENSITY
    ):
        flags.append("no_product")

    advice = [ADVICE[flag] for flag in flags]
    if "too_small" in flags:
        advice[flags.index("too_small")] = (
            f"too small ({width}x{height} px): send the original photo from the camera, "
            f"at least {settings.min_side_px} px on the short side"
        )
    return QualityReport(passed=not flags, flags=flags, advice=advice, metrics=metrics)


def _fit(gray: np.ndarray, side: int) -> np.ndarray:
    height, width = gray.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interpolation)


def _sharpness(gray: np.ndarray) -> tuple[float, float]:
    laplacian = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    height, width = laplacian.shape
    rows, cols = min(SHARPNESS_GRID, height), min(SHARPNESS_GRID, width)
    th, tw = height // rows, width // cols
    tiles = laplacian[: th * rows, : tw * cols].reshape(rows, th, cols, tw)
    per_tile = tiles.var(axis=(1, 3))
    return float(np.percentile(per_tile, SHARPNESS_PERCENTILE)), float(laplacian.var())


def _product_presence(image: np.ndarray) -> tuple[float, float]:
    """Fraction of the frame that differs from the background, and edge density mid-frame.

    The background is modelled as a smooth quadratic surface fitted to the border ring (a
    table top under uneven light); pixels far from it are "item". The largest such region's
    area is the product fraction.
    """
    fitted = _fit(image, PRESENCE_SIDE)
    if fitted.ndim == 2:
        fitted = np.repeat(fitted[..., None], 3, axis=2)
    small = cv2.GaussianBlur(fitted.astype(np.float32), (3, 3), 0)
    height, width = small.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xn, yn = xx / width - 0.5, yy / height - 0.5
    design = np.stack([np.ones_like(xn), xn, yn, xn * xn, yn * yn, xn * yn], axis=-1)
    band_y = max(1, round(height * BORDER_FRACTION))
    band_x = max(1, round(width * BORDER_FRACTION))
    border = np.zeros((height, width), bool)
    border[:band_y], border[-band_y:], border[:, :band_x], border[:, -band_x:] = (
        True,
        True,
        True,
        True,
    )
    # Normal equations of a 6-term fit: a 6x6 solve, no threaded LAPACK call per photo.
    edge_design = design[border].astype(np.float64)
    gram = edge_design.T @ edge_design + 1e-6 * np.eye(design.shape[-1])
    coef = np.linalg.solve(gram, edge_design.T @ small[border].astype(np.float64))
    residual = np.abs(small - (design @ coef).astype(np.float32)).max(axis=2)
    # When the item touches the border the fit is poor there; capping the noise estimate keeps
    # the item's own pixels from raising the bar so high that nothing counts as foreground.
    noise = min(float(np.percentile(residual[border], 90)), MAX_BACKGROUND_NOISE)
    foreground = (residual > max(MIN_FOREGROUND_RESIDUAL, 3.0 * noise)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    gray = cv2.cvtColor(small.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 50, 150)
    centre = edges[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
    density = float((centre > 0).mean()) if centre.size else 0.0
    return largest / float(height * width), density
