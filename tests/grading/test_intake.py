"""Photo intake: accepted formats, conversions, EXIF facts, orientation, hashes, bad uploads."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspection.errors import PhotoRejected, PhotoTooLarge, UnsupportedMediaType
from inspection.grading.intake import intake_photo, perceptual_hash, phash_distance, sniff_format
from inspection.settings import IntakeSettings
from tests.fixtures.images import (
    BadUpload,
    encode_image,
    make_16bit_gray_png,
    make_16bit_rgb_png,
    make_bomb_png,
    make_cmyk_jpeg,
    make_exif,
    make_gray_jpeg,
    make_la_png,
    make_palette_png,
    make_photo_bytes,
    make_product_image,
    make_rgba_png,
)

SETTINGS = IntakeSettings()


def _intake(data: bytes, content_type: str | None = None, settings: IntakeSettings = SETTINGS):
    return intake_photo(data=data, content_type=content_type, filename="p", settings=settings)


@pytest.mark.parametrize(
    ("fixture", "content_type", "fmt"),
    [
        ("product_jpeg", "image/jpeg", "JPEG"),
        ("product_png", "image/png", "PNG"),
        ("product_webp", "image/webp", "WEBP"),
        ("product_heic", "image/heic", "HEIF"),
        ("product_jpeg", None, "JPEG"),
        ("product_png", "application/octet-stream", "PNG"),
        ("product_jpeg", "image/jpeg; charset=binary", "JPEG"),
    ],
)
def test_accepted_formats_decode_to_rgb(
    request: pytest.FixtureRequest, fixture: str, content_type: str | None, fmt: str
) -> None:
    data = request.getfixturevalue(fixture)
    photo = _intake(data, content_type)
    assert photo.facts.format == fmt
    assert photo.image.dtype == np.uint8 and photo.image.shape == (600, 800, 3)
    assert (photo.facts.width, photo.facts.height) == (800, 600)
    assert photo.facts.byte_size == len(data)
    assert photo.facts.sha256 == hashlib.sha256(data).hexdigest()
    assert photo.data is data  # the original is kept untouched for the blob store
    # Decoded pixels are the picture, not noise: close to the source drawing.
    assert 60 < photo.image.mean() < 220


@pytest.mark.parametrize(
    ("maker", "mode_before"),
    [
        (make_cmyk_jpeg, "CMYK"),
        (make_16bit_gray_png, "I;16"),
        (make_16bit_rgb_png, None),
        (make_palette_png, "P"),
        (make_rgba_png, "RGBA"),
        (make_la_png, "LA"),
        (make_gray_jpeg, "L"),
    ],
)
def test_odd_modes_are_converted_not_rejected(maker, mode_before: str | None) -> None:  # type: ignore[no-untyped-def]
    data = maker()
    if mode_before is not None:
        import io

        assert Image.open(io.BytesIO(data)).mode == mode_before
    photo = _intake(data)
    assert photo.image.shape == (600, 800, 3) and photo.image.dtype == np.uint8
    reference = make_product_image()
    gray = cv2.cvtColor(photo.image, cv2.COLOR_RGB2GRAY).astype(float)
    ref_gray = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY).astype(float)
    # Same picture after conversion (16-bit scaled down right, not clipped to white/black).
    assert np.corrcoef(gray[60:].ravel(), ref_gray[60:].ravel())[0, 1] > 0.9


def test_transparent_areas_become_white() -> None:
    photo = _intake(make_rgba_png(alpha=0))
    assert photo.image[:40].min() == 255  # the fully transparent band, composited on white


def test_exif_facts_are_kept(product_jpeg: bytes) -> None:
    exif = _intake(product_jpeg).facts.exif
    assert exif.has_exif
    assert exif.camera_make == "Apple" and exif.camera_model == "iPhone 15"
    assert exif.software == "17.1"
    assert exif.captured_at == datetime(2026, 11, 1, 10, 30, tzinfo=UTC)


def test_exif_offset_time_gives_a_timezone() -> None:
    exif = make_exif(captured_at=datetime(2026, 11, 1, 10, 30))
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    captured = _intake(make_photo_bytes(exif=exif)).facts.exif.captured_at
    assert captured is not None and captured.isoformat() == "2026-11-01T10:30:00+02:00"


def test_photo_without_exif_says_so(product_png: bytes) -> None:
    exif = _intake(product_png).facts.exif
    assert not exif.has_exif and exif.captured_at is None and exif.camera_make is None


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = make_product_image(width=400, height=300, seed=5)
    data = encode_image(upright, fmt="PNG", orientation=orientation)
    photo = _intake(data)
    assert photo.image.shape == upright.shape
    assert (photo.facts.width, photo.facts.height) == (400, 300)
    assert photo.facts.exif.orientation == orientation
    assert np.abs(photo.image.astype(int) - upright.astype(int)).mean() < 1.0


def test_rotated_jpeg_fixture_is_upright(rotated_jpeg: bytes, product_jpeg: bytes) -> None:
    rotated, plain = _intake(rotated_jpeg), _intake(product_jpeg)
    assert rotated.image.shape == plain.image.shape == (600, 800, 3)
    assert phash_distance(rotated.facts.phash, plain.facts.phash) <= 4


def test_large_jpeg_decodes_at_reduced_size_but_reports_original_size() -> None:
    data = make_photo_bytes(width=4000, height=3000, quality=85)
    photo = _intake(data)
    assert (photo.facts.width, photo.facts.height) == (4000, 3000)
    assert max(photo.image.shape[:2]) <= SETTINGS.analysis_max_side
    assert max(photo.image.shape[:2]) >= SETTINGS.analysis_max_side * 0.75
    assert photo.image.shape[0] * 4 == photo.image.shape[1] * 3  # aspect ratio kept


def test_large_png_is_shrunk_to_the_analysis_size() -> None:
    photo = _intake(make_photo_bytes(fmt="PNG", width=2400, height=1800))
    assert photo.image.shape == (768, 1024, 3)


def test_phash_is_stable_under_resize_and_recompression() -> None:
    image = make_product_image(width=1200, height=900, seed=11, kind="box")
    base = perceptual_hash(image)
    assert len(base) == 16 and int(base, 16) >= 0
    small = cv2.resize(image, (400, 300), interpolation=cv2.INTER_AREA)
    assert phash_distance(base, perceptual_hash(small)) <= 4
    recompressed = _intake(encode_image(image, fmt="JPEG", quality=40)).image
    assert phash_distance(base, perceptual_hash(recompressed)) <= 4


def test_phash_differs_for_different_photos() -> None:
    hashes = [
        perceptual_hash(make_product_image(seed=seed, kind=kind))
        for seed, kind in [(1, "box"), (2, "shirt"), (3, "phone"), (4, "mug"), (5, "shoe")]
    ]
    distances = [phash_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > 10


def test_phash_distance_counts_bits() -> None:
    assert phash_distance("0000000000000000", "0000000000000000") == 0
    assert phash_distance("0000000000000000", "ffffffffffffffff") == 64
    assert phash_distance("00000000000000f0", "0000000000000010") == 3


def test_sniff_format() -> None:
    assert sniff_format(make_photo_bytes(fmt="WEBP")) == "WEBP"
    assert sniff_format(b"GIF89a....") is None
    assert sniff_format(b"") is None


def test_bad_upload_corpus(bad_uploads: list[BadUpload]) -> None:
    settings = IntakeSettings(max_bytes=64 * 1024)
    seen = set()
    for case in bad_uploads:
        with pytest.raises(PhotoRejected) as caught:
            intake_photo(
                data=case.data,
                content_type=case.content_type,
                filename=case.filename,
                settings=settings,
            )
        error = caught.value
        assert (error.status_code, error.code) == (case.status, case.code), case.name
        assert case.filename in error.message, case.name
        assert error.hint, case.name
        seen.add(error.details["reason"])
    assert len(seen) >= 8  # each case is refused for its own reason


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 5000x5000 fits Pillow's own bomb limit; our lower limit must refuse it before decoding.
    data = make_bomb_png(width=5000, height=5000)
    with pytest.raises(PhotoTooLarge) as caught:
        _intake(data, settings=IntakeSettings(max_pixels=10_000_000))
    assert caught.value.details["reason"] == "too_many_pixels"
    assert "25 megapixels" in caught.value.message


def test_gif_is_named_in_the_refusal() -> None:
    import io

    buffer = io.BytesIO()
    Image.fromarray(make_product_image(width=64, height=64)).save(buffer, format="GIF")
    with pytest.raises(UnsupportedMediaType) as caught:
        _intake(buffer.getvalue())
    assert "GIF" in caught.value.message


def test_declared_unsupported_image_type_is_refused(product_jpeg: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        _intake(product_jpeg, "image/gif")


# --- fuzzing: damaged files get a PhotoRejected, never another exception (a 500) ---

_SEED_FILES = {
    "jpeg": make_photo_bytes(width=160, height=120, exif=make_exif(orientation=6)),
    "png": make_photo_bytes(fmt="PNG", width=160, height=120),
    "webp": make_photo_bytes(fmt="WEBP", width=160, height=120),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(_SEED_FILES)),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_damaged_files_are_refused_or_decoded_never_crash(
    kind: str, flips: list[tuple[float, int]], cut: float | None
) -> None:
    data = bytearray(_SEED_FILES[kind])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    try:
        photo = _intake(bytes(data))
    except PhotoRejected as error:
        assert 400 <= error.status_code < 500 and error.message and error.hint
    else:
        assert photo.image.ndim == 3 and photo.image.dtype == np.uint8


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(max_size=2048),
    content_type=st.sampled_from([None, "image/jpeg", "text/plain", "image/png", ""]),
)
def test_random_bytes_never_crash(data: bytes, content_type: str | None) -> None:
    try:
        _intake(data, content_type)
    except PhotoRejected as error:
        assert 400 <= error.status_code < 500


def test_file_names_in_messages_are_tamed() -> None:
    from inspection.grading.intake import display_name

    assert display_name(None) == "the photo"
    assert display_name("\x00\x1b[31m") == "[31m"
    assert display_name("\n\t") == "the photo"
    long = display_name("a" * 500 + ".jpg")
    assert len(long) == 80 and long.endswith("…")
    with pytest.raises(PhotoRejected) as caught:
        intake_photo(data=b"", content_type=None, filename="x" * 10_000, settings=SETTINGS)
    assert len(caught.value.message) < 200


def test_refusals_survive_ultralytics_patching_pillow() -> None:
    # ultralytics replaces PIL.Image.open process-wide (training and tests import it): an
    # unreadable file must still be a PhotoRejected, not an attempted pip install.
    pytest.importorskip("ultralytics.utils.patches", reason="training extra not installed")
    assert Image.open.__module__ != "PIL.Image"
    broken_png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # PNG magic, no readable header
    with pytest.raises(PhotoRejected) as caught:
        _intake(broken_png, "image/png")
    assert caught.value.details["reason"] == "corrupt_header"
