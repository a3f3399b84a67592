"""Photo intake: turns uploaded bytes into an oriented RGB analysis image plus facts, or a 4xx.

Checks run cheapest first (size, declared type, magic bytes, header dimensions) so a bad or
hostile upload is refused before any pixel is decoded; originals are kept untouched.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import struct
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from inspection.errors import PhotoRejected, PhotoTooLarge, UnsupportedMediaType
from inspection.grading.types import ExifFacts, IntakePhoto, PhotoFacts
from inspection.settings import IntakeSettings

log = logging.getLogger(__name__)

pillow_heif.register_heif_opener()
# A truncated upload must be refused, not silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
FORMAT_CONTENT_TYPE = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}
# Declared content types we accept, and which format each one promises.
DECLARED_FORMAT = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/heic-sequence": "HEIF",
    "image/heif-sequence": "HEIF",
}
# Clients that do not know what they send; the bytes decide.
UNDECLARED_TYPES = {"", "application/octet-stream", "binary/octet-stream", "image/*"}
# ISO-BMFF brands that mean an HEIF/HEIC still image.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"hevm"}
# Formats we recognise but do not take: named in the error so the client knows what it sent.
KNOWN_UNSUPPORTED = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"%PDF": "PDF",
}
# No photo of a returned item is 10 px wide or 25x longer than it is tall; such files are
# screenshots of a sliver, corrupt headers or attempts to stress the decoder.
MIN_SIDE_PX = 16
MAX_ASPECT_RATIO = 25.0
# JPEG draft decoding may stop at a scale down to this fraction of analysis_max_side:
# 4000 px decodes at 1/4 (1000 px) instead of 1/2 (2000 px), four times less work.
DRAFT_TOLERANCE = 0.75
SUPPORTED_HINT = "send a JPEG, PNG, WebP or HEIC photo"
# Client file names are echoed in messages; a hostile one must not bloat or garble them.
MAX_NAME_CHARS = 80
EXIF_DATETIME = "%Y:%m:%d %H:%M:%S"
TAG_ORIENTATION = 0x0112
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_SOFTWARE = 0x0131
TAG_DATETIME = 0x0132
TAG_EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003
TAG_OFFSET_TIME_ORIGINAL = 0x9011


def sniff_format(data: bytes) -> str | None:
    """Names the image format from its magic bytes (JPEG, PNG, WEBP, HEIF), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def intake_photo(
    *, data: bytes, content_type: str | None, filename: str | None, settings: IntakeSettings
) -> IntakePhoto:
    """Validates, decodes and orients an uploaded photo; raises a PhotoRejected family error.

    Example:
        >>> photo = intake_photo(data=jpeg, content_type="image/jpeg", filename="a.jpg",
        ...                      settings=IntakeSettings())
        >>> photo.image.shape[2], photo.facts.format
        (3, 'JPEG')
    """
    name = display_name(filename)
    if not data:
        raise PhotoRejected(
            f"{name} is empty (0 bytes)",
            hint="the upload was probably interrupted: choose the photo again and re-send it",
            details={"reason": "empty"},
        )
    if len(data) > settings.max_bytes:
        raise PhotoTooLarge(
            f"{name} is {len(data) / 1e6:.1f} MB, over the {settings.max_bytes / 1e6:.1f} MB limit",
            hint="send the photo at a smaller size or higher compression (phone 'high efficiency'"
            " or 'medium' size is fine)",
            details={"reason": "too_many_bytes", "max_bytes": settings.max_bytes},
        )
    fmt = _check_type(data=data, content_type=content_type, name=name)
    with warnings.catch_warnings():
        # Pillow warns (then errors) on huge canvases; both mean a decompression bomb here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _pillow_open()(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(name, None, settings) from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError) as exc:
            raise PhotoRejected(
                f"{name} looks like {fmt} but its header cannot be read",
                hint=f"the file is damaged: export it again from the camera; {SUPPORTED_HINT}",
                details={"reason": "corrupt_header"},
            ) from exc
        with image:
            raw_w, raw_h = image.size
            _check_dimensions(name=name, width=raw_w, height=raw_h, settings=settings)
            exif = _exif_facts(image)
            if fmt == "JPEG":
                _request_draft(image, settings.analysis_max_side)
            try:
                image.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _too_many_pixels(name, raw_w * raw_h, settings) from exc
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise PhotoRejected(
                    f"{name} is truncated or damaged and cannot be decoded",
                    hint="the upload may have been cut off: re-send the original photo",
                    details={"reason": "truncated", "decoder": str(exc)[:120]},
                ) from exc
            pixels = _to_rgb_array(_orient(image, exif))
    pixels = _shrink(pixels, settings.analysis_max_side)
    swapped = exif.orientation in (5, 6, 7, 8)
    facts = PhotoFacts(
        sha256=hashlib.sha256(data).hexdigest(),
        phash=perceptual_hash(pixels),
        content_type=FORMAT_CONTENT_TYPE[fmt],
        format=fmt,
        width=raw_h if swapped else raw_w,
        height=raw_w if swapped else raw_h,
        byte_size=len(data),
        exif=exif,
    )
    return IntakePhoto(data=data, facts=facts, image=pixels)


def _pillow_open() -> Callable[..., Image.Image]:
    """Pillow's own Image.open, even where a library replaced it process-wide.

    ultralytics (imported by training and tests, never by the service) wraps Image.open so an
    unreadable file triggers a pip install of a HEIF plugin; intake must just refuse the file.
    """
    opener = Image.open
    if getattr(opener, "__module__", "PIL.Image") != "PIL.Image":
        original = getattr(sys.modules.get(opener.__module__), "_image_open", None)
        if callable(original):
            return original
    return opener


def display_name(filename: str | None) -> str:
    """The client's file name as it may appear in a message: printable, at most 80 characters."""
    if not filename:
        return "the photo"
    printable = "".join(ch for ch in filename if ch.isprintable()).strip()
    if not printable:
        return "the photo"
    return printable if len(printable) <= MAX_NAME_CHARS else printable[: MAX_NAME_CHARS - 1] + "…"


def _check_type(*, data: bytes, content_type: str | None, name: str) -> str:
    declared = (content_type or "").split(";")[0].strip().lower()
    fmt = sniff_format(data)
    if declared not in UNDECLARED_TYPES and not declared.startswith("image/"):
        raise UnsupportedMediaType(
            f"{name} was sent as {declared}, which is not an image type",
            hint=SUPPORTED_HINT,
            details={"reason": "not_an_image_type", "content_type": declared},
        )
    if fmt is None:
        known = next(
            (kind for magic, kind in KNOWN_UNSUPPORTED.items() if data.startswith(magic)), None
        )
        if known is not None:
            raise UnsupportedMediaType(
                f"{name} is a {known} file, which is not accepted",
                hint=f"{SUPPORTED_HINT}; convert the file or take the photo again",
                details={"reason": "unsupported_format", "format": known},
            )
        raise PhotoRejected(
            f"{name} is not an image: its content is not a JPEG, PNG, WebP or HEIC picture",
            hint=f"check that you picked the photo and not another file; {SUPPORTED_HINT}",
            details={"reason": "not_an_image"},
        )
    if declared not in UNDECLARED_TYPES:
        promised = DECLARED_FORMAT.get(declared)
        if promised is None:
            raise UnsupportedMediaType(
                f"{name} was sent as {declared}, which is not accepted",
                hint=SUPPORTED_HINT,
                details={"reason": "unsupported_format", "content_type": declared},
            )
        if promised != fmt:
            raise UnsupportedMediaType(
                f"{name} was sent as {declared} but its content is {FORMAT_CONTENT_TYPE[fmt]}",
                hint="send the file with its real content type (or application/octet-stream)",
                details={
                    "reason": "content_type_mismatch",
                    "content_type": declared,
                    "actual": fmt,
                },
            )
    return fmt


def _too_many_pixels(name: str, pixels: int | None, settings: IntakeSettings) -> PhotoTooLarge:
    size = f"{pixels / 1e6:.0f} megapixels" if pixels else "more pixels than the decoder allows"
    return PhotoTooLarge(
        f"{name} has {size}, over the {settings.max_pixels / 1e6:.0f} megapixel limit",
        hint="send a normal camera photo (up to 48 megapixels); panoramas and scans are refused",
        details={"reason": "too_many_pixels", "max_pixels": settings.max_pixels},
    )


def _check_dimensions(*, name: str, width: int, height: int, settings: IntakeSettings) -> None:
    # From the header only: nothing has been decoded yet.
    if width * height > settings.max_pixels:
        raise _too_many_pixels(name, width * height, settings)
    short, long = sorted((width, height))
    if short < MIN_SIDE_PX or long / max(short, 1) > MAX_ASPECT_RATIO:
        raise PhotoRejected(
            f"{name} is {width}x{height} pixels, which cannot be a photo of an item",
            hint="take a normal photo of the whole item (not a crop or a screenshot strip)",
            details={"reason": "absurd_dimensions", "width": width, "height": height},
        )


def _request_draft(image: Image.Image, max_side: int) -> None:
    width, height = image.size
    target = max_side * DRAFT_TOLERANCE
    if max(width, height) <= target:
        return
    scale = target / max(width, height)
    # draft() keeps the decoded size >= the requested one, at a 1/2, 1/4 or 1/8 DCT scale.
    image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def _orient(image: Image.Image, exif: ExifFacts) -> Image.Image:
    if exif.orientation in (None, 1):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except (ValueError, OSError, KeyError, TypeError):  # broken EXIF: keep the stored pixels
        log.warning("could not apply EXIF orientation %s", exif.orientation)
        return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale: keep the top 8 bits (32-bit "I" from 16-bit PNGs holds 0..65535).
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if mode != "I" or values.max(initial=0) > 255 else 1.0
        gray = np.clip(values / scale + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a product shot on a white page would look.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(canvas, dtype=np.uint8).copy()
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    if max(height, width) <= max_side:
        return pixels
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def _exif_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).replace("\x00", "").strip()
    return text[:120] or None


def _exif_facts(image: Image.Image) -> ExifFacts:
    try:
        exif = image.getexif()
    except (OSError, ValueError, SyntaxError, struct.error):
        log.info("unreadable EXIF block ignored")
        return ExifFacts()
    if not exif:
        return ExifFacts()
    try:
        sub = exif.get_ifd(TAG_EXIF_IFD)
    except (KeyError, ValueError, OSError, SyntaxError, struct.error):
        sub = {}
    orientation = exif.get(TAG_ORIENTATION)
    return ExifFacts(
        has_exif=True,
        captured_at=_exif_datetime(
            sub.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME),
            sub.get(TAG_OFFSET_TIME_ORIGINAL),
        ),
        camera_make=_exif_text(exif.get(TAG_MAKE)),
        camera_model=_exif_text(exif.get(TAG_MODEL)),
        software=_exif_text(exif.get(TAG_SOFTWARE)),
        orientation=orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
    )


def _exif_datetime(value: object, offset: object) -> datetime | None:
    text = _exif_text(value)
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:19], EXIF_DATETIME)
    except ValueError:
        return None
    tz = _exif_offset(_exif_text(offset))
    # Cameras write local time; with no offset tag we read it as UTC and say so in the docs.
    return moment.replace(tzinfo=tz or UTC)


def _exif_offset(text: str | None) -> timezone | None:
    if not text or len(text) < 6 or text[0] not in "+-":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(delta if text[0] == "+" else -delta)


def perceptual_hash(image: np.ndarray) -> str:
    """64-bit DCT perceptual hash of an RGB or gray image, as 16 hex digits.

    32x32 grayscale, 2-D DCT, the top-left 8x8 low frequencies, each bit set where the
    coefficient exceeds the median of the 63 AC coefficients (the DC term only says how bright
    the photo is). Resizing and JPEG re-encoding move few bits; different photos differ in ~32.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    median = np.median(low[1:])
    bits = low > median
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two perceptual hashes (0 = same picture, 64 = opposite)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
