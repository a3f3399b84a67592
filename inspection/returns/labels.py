"""Return shipping labels: a printable PNG with the RMA, tracking number and a Code 39 barcode.

A real deployment books the label with its carrier; this renders the same facts so customers
can print something that a station scanner reads (Code 39 needs no licence or library).
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

# Code 39 patterns: 9 elements (bar, space, bar, ...), "1" = wide. '*' is start/stop.
CODE39 = {
    "0": "000110100", "1": "100100001", "2": "001100001", "3": "101100000",
    "4": "000110001", "5": "100110000", "6": "001110000", "7": "000100101",
    "8": "100100100", "9": "001100100", "A": "100001001", "B": "001001001",
    "C": "101001000", "D": "000011001", "E": "100011000", "F": "001011000",
    "G": "000001101", "H": "100001100", "I": "001001100", "J": "000011100",
    "K": "100000011", "L": "001000011", "M": "101000010", "N": "000010011",
    "O": "100010010", "P": "001010010", "Q": "000000111", "R": "100000110",
    "S": "001000110", "T": "000010110", "U": "110000001", "V": "011000001",
    "W": "111000000", "X": "010010001", "Y": "110010000", "Z": "011010000",
    "-": "010000101", ".": "110000100", " ": "011000100", "*": "010010100",
}  # fmt: skip
WIDE_RATIO = 2.5  # wide:narrow above 2.2 keeps cheap scanners happy


def code39_modules(text: str, *, narrow: int = 2) -> list[tuple[bool, int]]:
    """(is_bar, width_px) runs for `*TEXT*`; raises ValueError on characters Code 39 lacks."""
    runs: list[tuple[bool, int]] = []
    for char in f"*{text.upper()}*":
        pattern = CODE39.get(char)
        if pattern is None:
            raise ValueError(f"Code 39 cannot encode {char!r}")
        for i, wide in enumerate(pattern):
            runs.append((i % 2 == 0, round(narrow * WIDE_RATIO) if wide == "1" else narrow))
        runs.append((False, narrow))  # inter-character gap
    return runs


def render_label_png(
    *, rma: str, carrier: str, tracking_number: str, order_number: str, issued_on: str
) -> bytes:
    """A 4x6-inch-ish label at 150 dpi as PNG bytes."""
    width, height = 600, 900
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    small = ImageFont.load_default(size=20)
    draw.rectangle((10, 10, width - 10, height - 10), outline="black", width=4)
    draw.text((30, 30), f"RETURN  {carrier.upper()}", fill="black", font=font)
    draw.line((10, 80, width - 10, 80), fill="black", width=3)
    lines = [
        f"RMA: {rma}",
        f"Order: {order_number}",
        f"Tracking: {tracking_number}",
        f"Issued: {issued_on}",
    ]
    for i, text in enumerate(lines):
        draw.text((30, 110 + i * 40), text, fill="black", font=small)
    for y_top, value in ((330, tracking_number), (620, rma)):
        # The widest modules that still fit inside the margins.
        narrow = 4
        while narrow > 1 and sum(w for _, w in code39_modules(value, narrow=narrow)) > width - 60:
            narrow -= 1
        runs = code39_modules(value, narrow=narrow)
        x = (width - sum(w for _, w in runs)) // 2
        for is_bar, w in runs:
            if is_bar:
                draw.rectangle((x, y_top, x + w - 1, y_top + 180), fill="black")
            x += w
        draw.text((width // 2, y_top + 200), value, fill="black", font=small, anchor="mt")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
