"""Request and response shapes of the returns API (docs/api.md); table models never leave
the service raw, they are turned into these `*Public` models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from inspection.decisions.types import ReturnReason
from inspection.errors import InvalidInput
from inspection.grading.types import Grade

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO-4217, e.g. EUR")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO-3166 alpha-2")]
Cents = Annotated[StrictInt, Field(ge=0, le=10**12, description="integer minor units")]
# Row ids are 32-bit integers in both databases; larger ids are refused as invalid, not a 500.
MAX_ID = 2**31 - 1
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]


def refuse_nul(value: str, *, field: str) -> str:
    """Refuses text with NUL characters (PostgreSQL cannot store them in text columns)."""
    if "\x00" in value:
        raise InvalidInput(
            f"{field} contains a NUL character", hint="remove control characters from the text"
        )
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_nul_characters(self) -> Any:
        for name, value in self:
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{name} contains a NUL character; remove control characters")
        return self


# --- orders ----------------------------------------------------------------------------------


class CustomerCreate(_In):
    external_id: str = Field(min_length=1, max_length=128)
    email: Email
    name: str | None = Field(default=None, max_length=200)
    created_at: AwareDatetime | None = None


class OrderLineCreate(_In):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=300)
    category: str = Field(min_length=1, max_length=64)
    price_cents: Cents
    quantity: StrictInt = Field(default=1, ge=1, le=10_000)
    final_sale: StrictBool = False


class OrderCreate(_In):
    order_number: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")
    customer: CustomerCreate
    ordered_at: AwareDatetime
    delivered_at: AwareDatetime | None = None
    currency: Currency
    shipping_country: Country | None = None
    billing_country: Country | None = None
    expedited_shipping: StrictBool = False
    lines: list[OrderLineCreate] = Field(min_length=1, max_length=500)


class OrdersImport(_In):
    orders: list[OrderCreate] = Field(min_length=1, max_length=10_000)


class ImportResult(BaseModel):
    created: int
    skipped_existing: int


class CustomerPublic(BaseModel):
    id: int
    external_id: str
    email: str
    name: str | None


class OrderLinePublic(BaseModel):
    id: int
    sku: str
    name: str
    category: str
    price_cents: int
    quantity: int
    final_sale: bool


class OrderPublic(BaseModel):
    id: int
    order_number: str
    customer: CustomerPublic
    ordered_at: datetime
    delivered_at: datetime | None
    currency: str
    shipping_country: str | None
    billing_country: str | None
    expedited_shipping: bool
    lines: list[OrderLinePublic]


# --- returns ---------------------------------------------------------------------------------


class ReturnItemCreate(_In):
    order_line_id: StrictInt = Field(ge=1, le=MAX_ID)
    quantity: StrictInt = Field(default=1, ge=1, le=10_000)
    reason_code: ReturnReason
    reason_text: str = Field(default="", max_length=2000)


class ReturnCreate(_In):
    order_number: str = Field(min_length=1, max_length=64)
    email: str = Field(min_length=3, max_length=320)
    items: list[ReturnItemCreate] = Field(min_length=1, max_length=100)


class DecisionOverride(_In):
    outcome: Literal["approve", "reject"]
    reason: str = Field(min_length=3, max_length=2000)


class InspectionInput(_In):
    """Either `{confirm: true}` (the station grade stands) or `{grade, reason}` (override)."""

    confirm: StrictBool | None = None
    grade: Grade | None = None
    reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _confirm_or_override(self) -> InspectionInput:
        if self.grade is None and self.confirm is not True:
            raise ValueError("send {confirm: true} to accept the grade, or {grade, reason}")
        if self.grade is not None and not (self.reason and len(self.reason.strip()) >= 3):
            raise ValueError("an override needs a reason (at least 3 characters)")
        return self


class QualityPublic(BaseModel):
    passed: bool
    flags: list[str]
    advice: list[str]


class DefectPublic(BaseModel):
    defect_type: str
    confidence: float
    box: tuple[float, float, float, float]
    severity: str
    area_fraction: float | None = None


class PhotoPublic(BaseModel):
    id: int
    return_item_id: int | None
    source: str
    sha256: str
    width: int
    height: int
    quality: QualityPublic
    grade: str | None
    probabilities: dict[str, float]
    confidence: float | None
    defects: list[DefectPublic]
    model_version: str | None
    created_at: datetime
    deleted: bool = False
    image_url: str | None
    annotated_url: str | None


class ItemGradePublic(BaseModel):
    grade: str
    confidence: float
    probabilities: dict[str, float]
    needs_review: bool
    reason_codes: list[str]
    source: str
    decided_by: str
    model_version: str | None
    detector_version: str | None
    photos: list[dict[str, Any]] = Field(default_factory=list)


class FraudSignalPublic(BaseModel):
    reason_code: str
    weight: float
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class RefundQuotePublic(BaseModel):
    amount_cents: int
    currency: str
    gross_cents: int
    deductions: list[dict[str, Any]]
    grade: str
    policy_version: str


class DecisionPublic(BaseModel):
    id: int
    outcome: str
    stage: str
    reason_codes: list[str]
    messages: list[str]
    fraud_score: float
    fraud_signals: list[FraudSignalPublic]
    refund: RefundQuotePublic | None
    policy_version: str
    model_version: str | None
    decided_by: str
    created_at: datetime


class RefundPublic(BaseModel):
    id: int
    amount_cents: int
    currency: str
    status: str
    idempotency_key: str
    adapter: str
    adapter_reference: str | None
    last_error: str | None = None
    created_at: datetime


class LabelPublic(BaseModel):
    carrier: str
    tracking_number: str
    label_url: str


class ReturnItemPublic(BaseModel):
    id: int
    order_line_id: int
    sku: str
    name: str
    category: str
    price_cents: int
    currency: str
    quantity: int
    reason_code: str
    reason_text: str


class ReturnPublic(BaseModel):
    id: int
    rma: str
    status: str
    order_number: str
    customer_id: int
    created_at: datetime
    updated_at: datetime
    final_grade: str | None = None
    items: list[ReturnItemPublic]
    photos: list[PhotoPublic]
    item_grade: ItemGradePublic | None
    decision: DecisionPublic | None
    refund: RefundPublic | None
    label: LabelPublic | None
    allowed_actions: list[str]


class ReturnOpened(BaseModel):
    return_: ReturnPublic = Field(alias="return", serialization_alias="return")
    customer_token: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ReturnSummary(BaseModel):
    id: int
    rma: str
    status: str
    order_number: str
    customer_id: int
    created_at: datetime
    updated_at: datetime
    final_grade: str | None


class ReturnsPage(BaseModel):
    data: list[ReturnSummary]
    count: int


class PhotosAdded(BaseModel):
    photos: list[PhotoPublic]
    item_grade: ItemGradePublic


class PhotosDeleted(BaseModel):
    deleted: int
