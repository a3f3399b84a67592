"""The printable label: Code 39 encodes what a scanner must read back, and refuses what it can't."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inspection.returns.labels import CODE39, code39_modules, render_label_png


def _decode_code39(runs: list[tuple[bool, int]], narrow: int) -> str:
    # Read the runs back the way a scanner does: 9 elements a character, then one gap.
    widths = ["1" if w > narrow else "0" for _, w in runs]
    by_pattern = {v: k for k, v in CODE39.items()}
    chars = [by_pattern["".join(widths[i : i + 9])] for i in range(0, len(widths), 10)]
    assert chars[0] == chars[-1] == "*"
    return "".join(chars[1:-1])


@pytest.mark.parametrize("text", ["RMA-000123", "RI00000042ABC123", "A B.9"])
def test_code39_round_trip(text: str) -> None:
    assert _decode_code39(code39_modules(text, narrow=2), narrow=2) == text


def test_code39_refuses_unencodable_characters() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        code39_modules("RMA_1")


def test_label_png_has_barcodes_inside_its_margins() -> None:
    png = render_label_png(
        rma="RMA-000123",
        carrier="demo-carrier",
        tracking_number="RI00000123AB12CD",
        order_number="ORD-1001",
        issued_on="2026-11-22",
    )
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert pixels.shape == (900, 600)
    inside_frame = pixels[400:500, 16:584]  # the 4 px frame sits at x=10..13 and 586..589
    dark = (inside_frame < 128).mean(axis=0) > 0.9
    assert dark.sum() > 50  # bars were drawn
    # ... and end before the frame: a quiet zone of white columns on both sides.
    assert not dark[:10].any() and not dark[-10:].any()
