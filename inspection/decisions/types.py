"""Typed inputs and outputs of the decision functions.

The returns domain gathers these facts from the database and the grader; the functions in
this package only compute over them, so every decision can be replayed from its inputs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from inspection.grading.types import ExifFacts, Grade

Outcome = Literal["approve", "approve_refund", "needs_review", "ineligible"]
Stage = Literal["claim", "inspection"]  # customer photos at claim time; station photos on receipt
PhotoSource = Literal["customer", "station"]

# Reason codes a customer states when opening a return.
ReturnReason = Literal[
    "damaged_on_arrival",
    "defective",
    "wrong_item",
    "not_as_described",
    "no_longer_needed",
    "wrong_size",
    "other",
]


class OrderLineFacts(BaseModel):
    """One purchased line, as the policy sees it."""

    sku: str
    category: str
    price_cents: int = Field(ge=0)  # unit price, integer minor units
    currency: str
    quantity: int = Field(default=1, ge=1)
    final_sale: bool = False
    ordered_at: datetime
    delivered_at: datetime | None = None


class ReturnClaim(BaseModel):
    """What the customer says: which line, why, and when the return was opened."""

    reason_code: ReturnReason
    reason_text: str = ""
    requested_at: datetime
    quantity: int = Field(default=1, ge=1)
    # Units of this line already returned on earlier returns (the quantity rule adds them up).
    previously_returned_quantity: int = Field(default=0, ge=0)


class CustomerHistory(BaseModel):
    """The customer's record, counted by the returns domain."""

    customer_id: int
    account_created_at: datetime
    orders_count: int = 0
    returns_count: int = 0
    returns_last_30d: int = 0
    returns_last_90d: int = 0
    prior_fraud_flags: int = 0


class OrderContext(BaseModel):
    """Order-level facts used by fraud signals."""

    order_value_cents: int = Field(ge=0)
    currency: str
    shipping_country: str | None = None
    billing_country: str | None = None
    expedited_shipping: bool = False
    ordered_at: datetime
    delivered_at: datetime | None = None


class PhotoEvidence(BaseModel):
    """One photo of this return, with the facts fraud checks read."""

    photo_id: int
    source: PhotoSource
    sha256: str
    phash: str
    exif: ExifFacts = ExifFacts()
    grade: Grade | None = None
    defect_types: list[str] = Field(default_factory=list)


class PhotoMatch(BaseModel):
    """A near-identical photo found on another return (found by the returns domain)."""

    photo_id: int
    matched_photo_id: int
    matched_return_id: int
    matched_customer_id: int
    same_customer: bool
    phash_distance: int  # Hamming distance of 64-bit perceptual hashes
    embedding_similarity: float | None = None  # cosine similarity of grader embeddings


class UnitComparison(BaseModel):
    """Customer photos vs station photos of the unit that arrived (same unit? new damage?)."""

    embedding_similarity: float | None = None
    local_feature_matches: int = 0  # RANSAC-consistent ORB matches, best photo pair
    same_unit_likely: bool = True
    customer_grade: Grade | None = None
    station_grade: Grade | None = None
    damage_present_at_claim: list[str] = Field(default_factory=list)
    damage_new_since_claim: list[str] = Field(default_factory=list)


class FraudInputs(BaseModel):
    """Everything the fraud signals look at."""

    claim: ReturnClaim
    order: OrderContext
    customer: CustomerHistory
    photos: list[PhotoEvidence] = Field(default_factory=list)
    photo_matches: list[PhotoMatch] = Field(default_factory=list)
    item_grade: Grade | None = None
    item_grade_confidence: float | None = Field(default=None, ge=0, le=1)
    category: str | None = None  # product category of the returned line (wardrobing)
    unit_comparison: UnitComparison | None = None
    anomaly_score: float | None = None  # 0..1 from the exported IsolationForest, if loaded


class RuleResult(BaseModel):
    """One eligibility rule: pass/fail with a reason code and a sentence a person can check."""

    rule: str
    passed: bool
    reason_code: str
    message: str


class EligibilityResult(BaseModel):
    eligible: bool
    rules: list[RuleResult]

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]


class FraudSignal(BaseModel):
    """One fraud signal with its evidence; signals add up to a score, never to a verdict."""

    reason_code: str
    weight: float = Field(ge=0, le=1)
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class FraudAssessment(BaseModel):
    score: float = Field(ge=0, le=1)
    signals: list[FraudSignal] = Field(default_factory=list)


class GradeFacts(BaseModel):
    """The grade as the engine needs it (from `ItemGrade` or an inspector's override)."""

    grade: Grade
    confidence: float = Field(ge=0, le=1)
    needs_review: bool = False
    reason_codes: list[str] = Field(default_factory=list)
    model_version: str | None = None
    decided_by: Literal["model", "inspector"] = "model"


class RefundQuote(BaseModel):
    """The refund the policy allows for a grade, with each deduction spelled out."""

    amount_cents: int = Field(ge=0)
    currency: str
    gross_cents: int = Field(ge=0)
    deductions: list[dict[str, Any]] = Field(default_factory=list)  # {"reason", "amount_cents"}
    grade: Grade
    policy_version: str


class ReviewCandidate(BaseModel):
    """A `needs_review` return as the exception queue ranks it (value x risk)."""

    return_id: int
    value_cents: int = Field(ge=0)
    currency: str
    fraud_score: float = Field(default=0.0, ge=0, le=1)
    grade_confidence: float | None = Field(default=None, ge=0, le=1)
    reason_codes: list[str] = Field(default_factory=list)
    signals: list[FraudSignal] = Field(default_factory=list)
    priority: float = 0.0  # filled in by `rank_for_review`: expected loss in minor units


class Decision(BaseModel):
    """The outcome with everything needed to explain and replay it."""

    outcome: Outcome
    stage: Stage
    reason_codes: list[str]
    messages: list[str] = Field(default_factory=list)
    fraud_score: float = 0.0
    refund: RefundQuote | None = None
    policy_version: str
    model_version: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
