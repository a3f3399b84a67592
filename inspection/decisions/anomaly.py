"""Anomaly score of a return from order and customer facts, with numpy only at run time.

`training/anomaly.py` fits scikit-learn's IsolationForest and exports its trees as JSON; this
module walks those trees the same way (`score_samples` negated: 0..1, higher = more unusual),
so the service needs no scikit-learn. `order_features` is the one definition of the features,
used by training and serving alike.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspection.decisions.eligibility import as_aware
from inspection.decisions.types import CustomerHistory, OrderContext, ReturnClaim

logger = logging.getLogger(__name__)

MODEL_FORMAT = "isolation-forest-json/1"
# Where the bundled export lives inside the models directory (`INSPECTION_MODEL_DIR`).
ANOMALY_MODEL_FILE = Path("anomaly") / "anomaly.json"

# Reasons that put the fault with the retailer: their returns look different (sooner, less
# often repeated), so the forest sees them as a feature rather than mixing them in.
_FAULT_REASONS = frozenset({"damaged_on_arrival", "defective", "wrong_item", "not_as_described"})

FEATURE_NAMES: tuple[str, ...] = (
    "order_value_log",  # log(1 + order value in major units): money is heavy-tailed
    "account_age_days",
    "orders_count",
    "return_rate",
    "returns_last_30d",
    "returns_last_90d",
    "prior_fraud_flags",
    "days_since_delivery",
    "expedited_shipping",
    "country_mismatch",
    "claim_quantity",
    "fault_claimed",
)


def order_features(
    *, customer: CustomerHistory, order: OrderContext, claim: ReturnClaim
) -> dict[str, float]:
    """The tabular features of one return, named as in FEATURE_NAMES."""
    requested = as_aware(claim.requested_at)
    since = as_aware(order.delivered_at or order.ordered_at)
    ship, bill = order.shipping_country, order.billing_country
    mismatch = bool(ship and bill and ship.strip().upper() != bill.strip().upper())
    return {
        "order_value_log": math.log1p(order.order_value_cents / 100),
        "account_age_days": max((requested - as_aware(customer.account_created_at)).days, 0),
        "orders_count": float(customer.orders_count),
        "return_rate": customer.returns_count / max(customer.orders_count, 1),
        "returns_last_30d": float(customer.returns_last_30d),
        "returns_last_90d": float(customer.returns_last_90d),
        "prior_fraud_flags": float(customer.prior_fraud_flags),
        "days_since_delivery": max((requested - since).total_seconds() / 86_400, 0.0),
        "expedited_shipping": 1.0 if order.expedited_shipping else 0.0,
        "country_mismatch": 1.0 if mismatch else 0.0,
        "claim_quantity": float(claim.quantity),
        "fault_claimed": 1.0 if claim.reason_code in _FAULT_REASONS else 0.0,
    }


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@dataclass(frozen=True)
class _Tree:
    feature: np.ndarray  # int, -1 at leaves
    threshold: np.ndarray  # float64; go left when x <= threshold
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray  # path length credited at a leaf: depth + c(samples in leaf) - 1


class AnomalyModel:
    """An exported isolation forest: `score` gives 0..1, higher meaning more unusual."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        if payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"not an {MODEL_FORMAT} file (format={payload.get('format')!r})")
        self.feature_names: tuple[str, ...] = tuple(payload["feature_names"])
        self.fill_values: dict[str, float] = {
            k: float(v) for k, v in payload["fill_values"].items()
        }
        self.normaliser = float(payload["path_length_normaliser"])
        self.version: str = str(payload.get("version", "unknown"))
        self.suggested_threshold: float | None = payload.get("suggested_threshold")
        self.trees = [
            _Tree(
                feature=np.asarray(t["feature"], dtype=np.int64),
                threshold=np.asarray(t["threshold"], dtype=np.float64),
                left=np.asarray(t["left"], dtype=np.int64),
                right=np.asarray(t["right"], dtype=np.int64),
                leaf_value=np.asarray(t["leaf_value"], dtype=np.float64),
            )
            for t in payload["trees"]
        ]
        self._lists = [
            (
                t.feature.tolist(),
                t.threshold.tolist(),
                t.left.tolist(),
                t.right.tolist(),
                t.leaf_value.tolist(),
            )
            for t in self.trees
        ]
        if not self.trees or self.normaliser <= 0:
            raise ValueError("the forest has no trees or no path-length normaliser")
        for tree in self.trees:
            if tree.feature.max(initial=-1) >= len(self.feature_names):
                raise ValueError("a tree splits on a feature the file does not name")

    def vector(self, features: Mapping[str, float]) -> np.ndarray:
        """Features in the model's order; a missing or non-finite one takes its training median."""
        values = []
        for name in self.feature_names:
            value = float(features.get(name, math.nan))
            values.append(value if math.isfinite(value) else self.fill_values.get(name, 0.0))
        return np.array(values, dtype=np.float64)

    def score_matrix(self, rows: np.ndarray) -> np.ndarray:
        """Anomaly scores (0..1) of a 2-D array of feature rows in `feature_names` order."""
        # scikit-learn's trees compare float32 inputs against float64 thresholds.
        x = np.asarray(rows, dtype=np.float32).astype(np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got {x.shape}")
        total = np.zeros(len(x))
        index = np.arange(len(x))
        for tree in self.trees:
            node = np.zeros(len(x), dtype=np.int64)
            active = tree.feature[node] >= 0
            while active.any():
                rows_at = index[active]
                at = node[active]
                go_left = x[rows_at, tree.feature[at]] <= tree.threshold[at]
                node[active] = np.where(go_left, tree.left[at], tree.right[at])
                active = tree.feature[node] >= 0
            total += tree.leaf_value[node]
        return np.power(2.0, -total / (len(self.trees) * self.normaliser))

    def score(self, features: Mapping[str, float]) -> float:
        """Anomaly score of one return, 0..1 (about 0.5 is ordinary; near 1 is very unusual)."""
        # One row: plain Python walks the trees ~30x faster than numpy's per-level overhead.
        row = [float(v) for v in self.vector(features).astype(np.float32)]
        total = 0.0
        for feature, threshold, left, right, leaf_value in self._lists:
            node = 0
            while feature[node] >= 0:
                node = left[node] if row[feature[node]] <= threshold[node] else right[node]
            total += leaf_value[node]
        return float(2.0 ** (-total / (len(self.trees) * self.normaliser)))

    def score_many(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """Anomaly scores of several returns."""
        if not rows:
            return []
        return [float(s) for s in self.score_matrix(np.stack([self.vector(r) for r in rows]))]


def load_anomaly_model(path: Path) -> AnomalyModel | None:
    """Loads exported forest parameters; None (with a warning) when absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        logger.info("no anomaly model at %s: the anomaly signal is off", path)
        return None
    try:
        return AnomalyModel(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("anomaly model %s is unusable (%s): the anomaly signal is off", path, exc)
        return None


def anomaly_score(
    *,
    model: AnomalyModel | None,
    customer: CustomerHistory,
    order: OrderContext,
    claim: ReturnClaim,
) -> float | None:
    """`FraudInputs.anomaly_score` for one return; None when no model is loaded."""
    if model is None:
        return None
    return round(model.score(order_features(customer=customer, order=order, claim=claim)), 6)
