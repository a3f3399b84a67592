"""The retailer's returns policy: a YAML file validated into typed rules on load.

Every threshold the decision functions use comes from here: a retailer changes behaviour by
editing the file (and its `version`), never the code. Keys: datasets/policy/POLICY.md.
"""

from __future__ import annotations

import copy
import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.decisions.types import ReturnReason
from inspection.errors import InvalidInput
from inspection.grading.types import GRADES, Grade, ReviewThresholds

logger = logging.getLogger(__name__)

# The categories the product card names; a policy file must say something about each of them
# (directly or through `default`), so a typo such as `electronic:` is caught on load.
REQUIRED_CATEGORIES = ("default", "electronics", "apparel", "shoes", "boxed", "hard_goods")


class PolicyInvalid(InvalidInput):
    """The policy file cannot be read or breaks a rule; the message names the bad key."""

    code = "invalid_policy"


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored would change decisions.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoneyLimit(_Strict):
    """A money amount in minor units, optionally different per currency (e.g. JPY has no cents)."""

    default_cents: int = Field(ge=0)
    by_currency: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_number_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected an amount in minor units, not true/false")
        if isinstance(value, int):
            return {"default_cents": value}
        if isinstance(value, dict) and "default_cents" not in value:
            if "default" not in value:
                raise ValueError("a per-currency limit needs a `default` entry")
            rest = {str(k).upper(): v for k, v in value.items() if k != "default"}
            return {"default_cents": value["default"], "by_currency": rest}
        return value

    @field_validator("by_currency")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for currency, cents in value.items():
            if cents < 0:
                raise ValueError(f"{currency} limit must be >= 0")
        return value

    def for_currency(self, currency: str) -> int:
        """The limit in minor units of `currency`."""
        return self.by_currency.get(currency.upper(), self.default_cents)


class FixedDeduction(_Strict):
    reason: str = Field(min_length=1)
    amount_cents: int = Field(ge=0)


class GradeRefundRule(_Strict):
    """How much of the price comes back for one grade."""

    percent: Decimal = Field(ge=0, le=100)  # of the price paid
    restocking_fee_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    fixed_deductions: list[FixedDeduction] = Field(default_factory=list)  # once per line
    minimum_cents: int = Field(default=0, ge=0)  # floor, never above what was paid


class CategoryPolicy(_Strict):
    """Rules of one product category (entries inherit every key they omit from `default`)."""

    name: str
    window_days: int = Field(ge=0, le=3650)
    faulty_window_days: int | None = Field(default=None, ge=0, le=3650)
    final_sale_returnable: bool = False
    photos_required: int = Field(ge=0, le=10)
    change_of_mind_grades: list[Grade]
    review: ReviewThresholds
    refund: dict[Grade, GradeRefundRule]

    @field_validator("refund")
    @classmethod
    def _every_grade(cls, value: dict[Grade, GradeRefundRule]) -> dict[Grade, GradeRefundRule]:
        missing = [g for g in GRADES if g not in value]
        if missing:
            raise ValueError(f"refund rules missing for grade(s): {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _faulty_window_not_shorter(self) -> CategoryPolicy:
        if self.faulty_window_days is not None and self.faulty_window_days < self.window_days:
            raise ValueError("faulty_window_days must not be shorter than window_days")
        return self

    def window_for(self, *, faulty: bool) -> int:
        """Days allowed after delivery: the longer faulty window for faulty goods."""
        if faulty and self.faulty_window_days is not None:
            return self.faulty_window_days
        return self.window_days


class AutoApprovePolicy(_Strict):
    max_value_cents: MoneyLimit


class InstantRefundPolicy(_Strict):
    """When a refund may be paid at claim time, before the item arrives."""

    enabled: bool = True
    max_value_cents: MoneyLimit
    min_account_age_days: int = Field(ge=0)
    min_orders: int = Field(ge=0)
    max_returns_last_90d: int = Field(ge=0)
    max_return_rate: float = Field(ge=0, le=1)
    max_prior_fraud_flags: int = Field(ge=0)
    min_grade_confidence: float = Field(ge=0, le=1)
    allowed_grades: list[Grade]
    max_fraud_score: float = Field(ge=0, le=1)


class PhotoReusePolicy(_Strict):
    max_phash_distance: int = Field(ge=0, le=64)
    min_embedding_similarity: float = Field(ge=-1, le=1)


class ExifPolicy(_Strict):
    editing_software: list[str]
    expect_camera_photos: bool = True
    clock_tolerance_hours: float = Field(ge=0, le=48)

    @field_validator("editing_software")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value if v.strip()]


class HistoryPolicy(_Strict):
    high_return_rate: float = Field(ge=0, le=1)
    min_orders_for_rate: int = Field(ge=1)
    frequent_returns_30d: int = Field(ge=1)
    frequent_returns_90d: int = Field(ge=1)
    new_account_days: int = Field(ge=0)


class OrderRiskPolicy(_Strict):
    high_value_cents: MoneyLimit


class WardrobingPolicy(_Strict):
    categories: list[str]
    max_days_after_delivery: int = Field(ge=0)


class ReasonGradePolicy(_Strict):
    reasons: list[ReturnReason]
    min_confidence: float = Field(ge=0, le=1)


# Every signal `assess_fraud` can raise; a weight for each must be in the file.
FRAUD_SIGNALS = (
    "photo_reuse",
    "photo_reuse_same_customer",
    "exif_before_delivery",
    "exif_edited",
    "exif_missing",
    "high_return_rate",
    "frequent_returns",
    "prior_fraud_flags",
    "new_account",
    "high_value",
    "address_mismatch",
    "wardrobing",
    "reason_grade_mismatch",
    "swapped_item",
    "new_damage_after_claim",
    "condition_worse_at_station",
    "anomaly",
)


class FraudPolicy(_Strict):
    review_threshold: float = Field(gt=0, le=1)
    always_review: list[str] = Field(default_factory=list)
    photo_reuse: PhotoReusePolicy
    exif: ExifPolicy
    history: HistoryPolicy
    order: OrderRiskPolicy
    wardrobing: WardrobingPolicy
    reason_grade_mismatch: ReasonGradePolicy
    anomaly_threshold: float = Field(ge=0, le=1)
    weights: dict[str, float]

    @field_validator("weights")
    @classmethod
    def _known_complete_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FRAUD_SIGNALS))
        if unknown:
            raise ValueError(
                f"unknown signal(s) {', '.join(unknown)}; known: {', '.join(FRAUD_SIGNALS)}"
            )
        missing = [s for s in FRAUD_SIGNALS if s not in value]
        if missing:
            raise ValueError(f"weight missing for signal(s): {', '.join(missing)}")
        for signal, weight in value.items():
            if not 0 <= weight <= 1:
                raise ValueError(f"weight of {signal} must be between 0 and 1, got {weight}")
        return value

    @field_validator("always_review")
    @classmethod
    def _known_signals(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FRAUD_SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {', '.join(unknown)}")
        return value


class Policy(_Strict):
    """A validated returns policy. Build it with `load_policy` or `Policy.from_mapping`."""

    version: str = Field(min_length=1)
    timezone: str
    faulty_reasons: list[ReturnReason]
    non_returnable_categories: list[str] = Field(default_factory=list)
    auto_approve: AutoApprovePolicy
    instant_refund: InstantRefundPolicy
    fraud: FraudPolicy
    categories: dict[str, CategoryPolicy]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # YAML reads `version: 2026.11` as a float; keep what the author wrote as text.
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin)") from exc
        return value

    @model_validator(mode="before")
    @classmethod
    def _inherit_from_default(cls, data: Any) -> Any:
        """Fills each category's missing keys from `categories.default` (nested maps merge)."""
        if not isinstance(data, dict) or not isinstance(data.get("categories"), dict):
            return data
        categories = data["categories"]
        default = categories.get("default")
        if not isinstance(default, dict):
            return data
        merged: dict[str, Any] = {}
        for name, entry in categories.items():
            if entry is not None and not isinstance(entry, dict):
                merged[name] = entry  # let validation report the wrong type
                continue
            merged[name] = {**_deep_merge(default, entry or {}), "name": name}
        return {**data, "categories": merged}

    @field_validator("categories")
    @classmethod
    def _required_categories(cls, value: dict[str, CategoryPolicy]) -> dict[str, CategoryPolicy]:
        missing = [c for c in REQUIRED_CATEGORIES if c not in value]
        if missing:
            raise ValueError(f"categories missing: {', '.join(missing)}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone windows are counted in."""
        return ZoneInfo(self.timezone)

    def category(self, name: str | None) -> CategoryPolicy:
        """The rules of a category; unknown (or no) category gets the `default` entry."""
        if name is not None and name in self.categories:
            return self.categories[name]
        return self.categories["default"]

    def review_thresholds(self, category: str | None) -> ReviewThresholds:
        """When a grade for this category goes to a person (`categories.<name>.review`)."""
        return self.category(category).review

    def is_returnable_category(self, name: str) -> bool:
        """False for categories the policy lists as never returnable for a change of mind."""
        return name not in self.non_returnable_categories

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "policy") -> Policy:
        """Validates parsed YAML; raises `PolicyInvalid` naming each bad key."""
        if not isinstance(data, dict):
            raise PolicyInvalid(
                f"{source} must be a YAML mapping of keys, got {type(data).__name__}",
                hint="start from datasets/policy/returns-policy.yaml",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [
                {
                    "key": ".".join(str(p) for p in err["loc"]) or "(top level)",
                    "message": msg,
                }
                for err in exc.errors()
                for msg in [err["msg"].removeprefix("Value error, ")]
            ]
            listed = "; ".join(f"{p['key']}: {p['message']}" for p in problems)
            raise PolicyInvalid(
                f"{source} is invalid: {listed}",
                hint="fix the named key(s); every key is explained in datasets/policy/POLICY.md",
                details={"problems": problems},
            ) from None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loading that refuses a key written twice (the second would silently win)."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"key {key!r} appears twice",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,
)

_REPO_ROOT = Path(__file__).resolve().parents[2]
_cache: dict[tuple[str, int], Policy] = {}
_cache_lock = threading.Lock()


def load_policy(path: Path) -> Policy:
    """Reads and validates a policy file, cached by path and modification time."""
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (_REPO_ROOT / path).exists():
        # A relative default (datasets/policy/...) still works when started from another folder.
        path = _REPO_ROOT / path
    try:
        stat = path.stat()
    except OSError as exc:
        raise PolicyInvalid(
            f"policy file {path} cannot be read: {exc.strerror or exc}",
            hint="set INSPECTION_POLICY_PATH to an existing YAML file",
        ) from None
    key = (str(path.resolve()), stat.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyInvalid(
            f"policy file {path} is not valid YAML{where}: {problem}",
            hint="check indentation and quoting near that line",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyInvalid(f"policy file {path} cannot be read: {exc}") from None
    policy = Policy.from_mapping(data, source=f"policy file {path}")
    with _cache_lock:
        # Keep only the newest version of each file.
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = policy
    logger.info("loaded returns policy %s version %s", path, policy.version)
    return policy
