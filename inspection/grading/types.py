"""What grading produces: photo facts, quality reports, defects, per-photo and item grades.

These are the shapes the returns domain stores, the decision engine reads and `/v1/grade`
returns; they carry no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

Grade = Literal["resell", "refurbish", "reject"]
GRADES: tuple[Grade, ...] = ("resell", "refurbish", "reject")  # best to worst
Severity = Literal["minor", "moderate", "severe"]


class ExifFacts(BaseModel):
    """EXIF facts kept for the fraud checks (capture time vs delivery, editing software)."""

    has_exif: bool = False
    captured_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    software: str | None = None
    orientation: int | None = None


class PhotoFacts(BaseModel):
    """Identity and shape of an uploaded photo."""

    sha256: str
    phash: str = Field(description="64-bit perceptual hash as 16 hex digits")
    content_type: str
    format: str
    width: int
    height: int
    byte_size: int
    exif: ExifFacts = ExifFacts()


class QualityReport(BaseModel):
    """Quality gate result: flags with advice a customer can follow; never blocks grading."""

    passed: bool
    # blurry, too_dark, too_bright, too_small, no_product
    flags: list[str] = Field(default_factory=list)
    advice: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)


class Defect(BaseModel):
    """One detected defect; `box` is (x1, y1, x2, y2) as fractions of the photo's width/height."""

    defect_type: str
    confidence: float
    box: tuple[float, float, float, float]
    area_fraction: float
    severity: Severity


class PhotoGrade(BaseModel):
    """The grade of one photo."""

    grade: Grade
    probabilities: dict[str, float]
    confidence: float
    defects: list[Defect] = Field(default_factory=list)
    quality: QualityReport
    facts: PhotoFacts
    model_version: str
    detector_version: str | None = None
    latency_ms: float = 0.0
    # Pooled grader features: same-unit matching and near-duplicate search. Not sent to clients.
    embedding: list[float] | None = Field(default=None, exclude=True)


class ItemGrade(BaseModel):
    """The grade of one returned item from all of its photos."""

    grade: Grade
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    reason_codes: list[str] = Field(default_factory=list)
    photos: list[PhotoGrade] = Field(default_factory=list)
    model_version: str
    detector_version: str | None = None


@dataclass
class IntakePhoto:
    """A decoded, oriented photo ready for the quality gate and the models."""

    data: bytes
    facts: PhotoFacts
    # RGB uint8, EXIF orientation applied, longest side at most `analysis_max_side`.
    image: np.ndarray = field(repr=False)


class ReviewThresholds(BaseModel):
    """When an item grade goes to a person instead of being trusted (per product category).

    Read from the policy file (`categories.<name>.review`), so a retailer tunes them without code.
    """

    min_confidence: float = Field(default=0.6, ge=0, le=1)
    # Photos of one item whose grades differ by more than this many steps need a look.
    max_grade_spread: int = Field(default=1, ge=0, le=2)
    # A failed quality gate on every photo means the grade rests on bad evidence.
    review_on_poor_quality: bool = True
