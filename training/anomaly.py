"""Trains the return-anomaly IsolationForest and exports it as JSON for the numpy-only runtime.

History comes from the service database (one row per returned line), a CSV of feature rows, or,
with neither, a generated order history of ordinary customers plus a few abusive patterns
(new accounts returning everything, expensive quick returns, mismatched addresses). The exported
file holds each tree's splits and leaf path lengths; `inspection.decisions.anomaly` scores with it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import yaml
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from inspection.decisions.anomaly import (
    FEATURE_NAMES,
    MODEL_FORMAT,
    AnomalyModel,
    average_path_length,
    order_features,
)
from inspection.decisions.types import CustomerHistory, OrderContext, ReturnClaim, ReturnReason

logger = logging.getLogger(__name__)

MODEL_FILE = "anomaly.json"
CARD_FILE = "model_card.yaml"

N_TREES = 100
MAX_SAMPLES = 256  # the paper's default: small subsamples isolate outliers best
GENERATED_RETURNS = 6_000
ABUSIVE_FRACTION = 0.03  # share of generated returns drawn from abusive patterns
# Threshold suggestion: flag about this share of ordinary returns (1 in 50 gets a second look).
TARGET_FALSE_POSITIVE_RATE = 0.02
HISTORY_END = datetime(2026, 6, 1, tzinfo=UTC)  # generated history is fixed in time: reproducible

_FAULT: tuple[ReturnReason, ...] = ("damaged_on_arrival", "defective", "wrong_item")
_CHANGE_OF_MIND: tuple[ReturnReason, ...] = ("no_longer_needed", "wrong_size", "other")


@dataclass(frozen=True)
class HistoryRow:
    """One returned line as the anomaly model sees it."""

    customer: CustomerHistory
    order: OrderContext
    claim: ReturnClaim
    abusive: bool = False  # known only for generated history (used to measure, not to train)


def _ordinary(rng: np.random.Generator, customer_id: int) -> HistoryRow:
    age = int(np.clip(rng.lognormal(np.log(500), 0.9), 1, 4_000))
    orders = 1 + int(rng.poisson(age / 60 * rng.uniform(0.3, 1.5)))
    orders = min(orders, 300)
    rate = rng.beta(2, 12)
    returns = int(rng.binomial(orders - 1, rate)) if orders > 1 else 0
    recent90 = min(returns, int(rng.poisson(returns * min(1.0, 90 / age))))
    recent30 = min(recent90, int(rng.poisson(recent90 / 3)))
    requested = HISTORY_END - timedelta(days=float(rng.uniform(0, 365)))
    since = float(np.clip(rng.gamma(2.0, 5.0), 0.1, 60))
    delivered = requested - timedelta(days=since)
    ordered = delivered - timedelta(days=float(rng.uniform(1, 6)))
    mismatch = rng.random() < 0.03
    value = int(np.clip(rng.lognormal(np.log(6_000), 0.8), 300, 500_000))
    fault = rng.random() < 0.3
    return HistoryRow(
        customer=CustomerHistory(
            customer_id=customer_id,
            account_created_at=requested - timedelta(days=age),
            orders_count=orders,
            returns_count=returns,
            returns_last_30d=recent30,
            returns_last_90d=recent90,
            prior_fraud_flags=int(rng.random() < 0.02),
        ),
        order=OrderContext(
            order_value_cents=value,
            currency="EUR",
            shipping_country="DE",
            billing_country="FR" if mismatch else "DE",
            expedited_shipping=bool(rng.random() < 0.12),
            ordered_at=ordered,
            delivered_at=delivered,
        ),
        claim=ReturnClaim(
            reason_code=rng.choice(_FAULT if fault else _CHANGE_OF_MIND),
            requested_at=requested,
            quantity=int(rng.choice([1, 2, 3], p=[0.9, 0.08, 0.02])),
        ),
    )


def _abusive(rng: np.random.Generator, customer_id: int) -> HistoryRow:
    """One of three abuse patterns; each overlaps ordinary behaviour on some features."""
    pattern = rng.choice(["serial_returner", "wardrober", "high_value_reshipper"])
    requested = HISTORY_END - timedelta(days=float(rng.uniform(0, 365)))
    if pattern == "serial_returner":  # young account returning nearly everything it buys
        age, orders = int(rng.integers(0, 120)), int(rng.integers(1, 9))
        returns = min(orders + 2, orders - 1 + int(rng.integers(0, 3))) if orders > 1 else 0
        recent90 = min(returns, int(rng.integers(1, 6)))
        since, value = float(rng.uniform(0.5, 12)), rng.lognormal(np.log(12_000), 0.7)
        expedited, mismatch = rng.random() < 0.3, rng.random() < 0.15
    elif pattern == "wardrober":  # established account, expedited, back within days
        age = int(np.clip(rng.lognormal(np.log(400), 0.8), 30, 4_000))
        orders = 2 + int(rng.poisson(age / 60))
        returns = int(rng.binomial(orders - 1, rng.uniform(0.45, 0.9)))
        recent90 = min(returns, int(rng.integers(2, 9)))
        since, value = float(rng.uniform(0.2, 4)), rng.lognormal(np.log(15_000), 0.6)
        expedited, mismatch = rng.random() < 0.85, rng.random() < 0.05
    else:  # expensive order shipped to one country, paid from another, returned as faulty
        age, orders = int(rng.integers(0, 60)), int(rng.integers(1, 4))
        returns = int(rng.integers(0, orders))
        recent90 = min(returns, int(rng.integers(0, 3)))
        since, value = float(rng.uniform(0.1, 6)), rng.lognormal(np.log(60_000), 0.5)
        expedited, mismatch = rng.random() < 0.6, rng.random() < 0.7
    delivered = requested - timedelta(days=since)
    recent30 = min(recent90, int(rng.poisson(recent90 / 2)))
    fault = rng.random() < (0.8 if pattern == "high_value_reshipper" else 0.4)
    return HistoryRow(
        customer=CustomerHistory(
            customer_id=customer_id,
            account_created_at=requested - timedelta(days=age),
            orders_count=orders,
            returns_count=returns,
            returns_last_30d=recent30,
            returns_last_90d=recent90,
            prior_fraud_flags=int(rng.random() < 0.15),
        ),
        order=OrderContext(
            order_value_cents=int(np.clip(value, 500, 2_000_000)),
            currency="EUR",
            shipping_country="DE",
            billing_country="NG" if mismatch else "DE",
            expedited_shipping=bool(expedited),
            ordered_at=delivered - timedelta(days=float(rng.uniform(1, 4))),
            delivered_at=delivered,
        ),
        claim=ReturnClaim(
            reason_code=rng.choice(_FAULT if fault else _CHANGE_OF_MIND),
            requested_at=requested,
            quantity=int(rng.choice([1, 2, 3, 4], p=[0.6, 0.25, 0.1, 0.05])),
        ),
        abusive=True,
    )


def generate_history(
    *, n_returns: int = GENERATED_RETURNS, seed: int = 0, abusive_fraction: float = ABUSIVE_FRACTION
) -> list[HistoryRow]:
    """A realistic, reproducible order history: mostly ordinary returns, a few abusive ones."""
    rng = np.random.default_rng(seed)
    return [
        _abusive(rng, i) if rng.random() < abusive_fraction else _ordinary(rng, i)
        for i in range(n_returns)
    ]


def history_from_database(database_url: str) -> list[HistoryRow]:
    """One row per returned line in the service database, with the history as it was then."""
    from sqlmodel import Session, create_engine, select

    from inspection.store.models import (
        Customer,
        DecisionRecord,
        Order,
        OrderLine,
        Return,
        ReturnItem,
    )

    engine = create_engine(database_url)
    with Session(engine) as session:
        customers = {c.id: c for c in session.exec(select(Customer))}
        orders = list(session.exec(select(Order)))
        lines = list(session.exec(select(OrderLine)))
        returns = list(session.exec(select(Return)))
        items = list(session.exec(select(ReturnItem)))
        decisions = list(session.exec(select(DecisionRecord)))
    engine.dispose()

    order_by_id = {o.id: o for o in orders}
    value: dict[int | None, int] = {}
    for line in lines:
        value[line.order_id] = value.get(line.order_id, 0) + line.price_cents * line.quantity
    returns_by_id = {r.id: r for r in returns}
    orders_of: dict[int | None, list[Order]] = {}
    for o in orders:
        orders_of.setdefault(o.customer_id, []).append(o)
    returns_of: dict[int | None, list[Return]] = {}
    for r in returns:
        returns_of.setdefault(r.customer_id, []).append(r)
    flagged_returns = {
        d.return_id for d in decisions if "fraud_score_high" in (d.reason_codes or [])
    }

    rows: list[HistoryRow] = []
    for item in items:
        ret = returns_by_id.get(item.return_id)
        order = order_by_id.get(ret.order_id) if ret else None
        customer = customers.get(ret.customer_id) if ret else None
        if ret is None or order is None or customer is None:
            continue
        at = _aware(ret.created_at)
        earlier_orders = [o for o in orders_of.get(customer.id, []) if _aware(o.ordered_at) <= at]
        earlier_returns = [r for r in returns_of.get(customer.id, []) if _aware(r.created_at) < at]
        rows.append(
            HistoryRow(
                customer=CustomerHistory(
                    customer_id=customer.id or 0,
                    account_created_at=_aware(customer.created_at),
                    orders_count=len(earlier_orders),
                    returns_count=len(earlier_returns),
                    returns_last_30d=sum(
                        at - _aware(r.created_at) <= timedelta(days=30) for r in earlier_returns
                    ),
                    returns_last_90d=sum(
                        at - _aware(r.created_at) <= timedelta(days=90) for r in earlier_returns
                    ),
                    prior_fraud_flags=sum(r.id in flagged_returns for r in earlier_returns),
                ),
                order=OrderContext(
                    order_value_cents=value.get(order.id, 0),
                    currency=order.currency,
                    shipping_country=order.shipping_country,
                    billing_country=order.billing_country,
                    expedited_shipping=order.expedited_shipping,
                    ordered_at=_aware(order.ordered_at),
                    delivered_at=_aware(order.delivered_at) if order.delivered_at else None,
                ),
                claim=ReturnClaim(
                    reason_code=item.reason_code,  # type: ignore[arg-type]
                    requested_at=at,
                    quantity=item.quantity,
                ),
            )
        )
    return rows


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def matrix_from_csv(path: Path) -> np.ndarray:
    """Feature rows from a CSV whose header names every feature in FEATURE_NAMES."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [n for n in FEATURE_NAMES if n not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks feature column(s): {', '.join(missing)}")
        rows = []
        for number, row in enumerate(reader, start=2):
            try:
                rows.append([float(row[n]) for n in FEATURE_NAMES])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None
    if not rows:
        raise ValueError(f"{path} has no rows")
    return np.asarray(rows, dtype=np.float64)


def feature_matrix(rows: Sequence[HistoryRow]) -> np.ndarray:
    """Rows of order_features in FEATURE_NAMES order."""
    return np.asarray(
        [
            [
                order_features(customer=r.customer, order=r.order, claim=r.claim)[n]
                for n in FEATURE_NAMES
            ]
            for r in rows
        ],
        dtype=np.float64,
    )


def fit_forest(x: np.ndarray, *, seed: int) -> IsolationForest:
    """Fits the forest on feature rows."""
    return IsolationForest(
        n_estimators=N_TREES, max_samples=min(MAX_SAMPLES, len(x)), random_state=seed
    ).fit(x)


def export_forest(
    forest: IsolationForest, *, fill_values: dict[str, float], extra: dict[str, Any]
) -> dict[str, Any]:
    """The forest as plain JSON: per tree, split feature/threshold/children, leaf path lengths."""
    n_features = len(FEATURE_NAMES)
    trees = []
    for estimator, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = estimator.tree_
        left, right = tree.children_left, tree.children_right
        depth = np.zeros(tree.node_count, dtype=np.float64)
        stack = [(0, 1.0)]  # scikit-learn counts the root as depth 1
        while stack:
            node, d = stack.pop()
            depth[node] = d
            if left[node] != -1:
                stack.extend([(int(left[node]), d + 1), (int(right[node]), d + 1)])
        leaf = left == -1
        leaf_value = np.where(leaf, depth + average_path_length(tree.n_node_samples) - 1.0, 0.0)
        # Trees trained on a feature subset index into it; map back to the full row.
        subset = len(features) != n_features
        feature = np.where(
            leaf,
            -1,
            np.asarray(features)[np.clip(tree.feature, 0, None)] if subset else tree.feature,
        )
        trees.append(
            {
                "feature": feature.astype(int).tolist(),
                "threshold": np.where(leaf, 0.0, tree.threshold).tolist(),
                "left": left.astype(int).tolist(),
                "right": right.astype(int).tolist(),
                "leaf_value": leaf_value.tolist(),
            }
        )
    body = {
        "format": MODEL_FORMAT,
        "feature_names": list(FEATURE_NAMES),
        "fill_values": fill_values,
        "path_length_normaliser": float(average_path_length(np.array([forest.max_samples_]))[0]),
        "n_trees": len(trees),
        "max_samples": int(forest.max_samples_),
        "trees": trees,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return {**body, "version": f"anomaly-{digest}", **extra}


def train_anomaly(
    *, database_url: str | None, history_csv: Path | None, out: Path, seed: int = 0
) -> Path:
    """Trains the IsolationForest on order history and writes its JSON export; returns the file.

    `out` is a directory (gets `anomaly.json` and `model_card.yaml`) or a `.json` file path.
    With neither a database nor a CSV, trains on a generated history (seeded, reproducible).
    """
    labels: np.ndarray | None = None
    if history_csv is not None:
        x = matrix_from_csv(Path(history_csv))
        source = f"csv:{Path(history_csv).name}"
    elif database_url is not None:
        rows = history_from_database(database_url)
        if len(rows) < 10:
            raise ValueError(
                f"the database holds {len(rows)} returned line(s); at least 10 are needed "
                "(or train without --database-url on a generated history)"
            )
        x = feature_matrix(rows)
        source = "database"
    else:
        rows = generate_history(seed=seed)
        x = feature_matrix(rows)
        labels = np.array([r.abusive for r in rows])
        source = f"generated:{len(rows)} returns, {ABUSIVE_FRACTION:.0%} abusive, seed {seed}"

    forest = fit_forest(x, seed=seed)
    scores = -forest.score_samples(x)
    ordinary = scores[~labels] if labels is not None else scores
    threshold = round(float(np.quantile(ordinary, 1 - TARGET_FALSE_POSITIVE_RATE)), 4)
    metrics: dict[str, float] = {
        "rows": float(len(x)),
        "threshold_false_positive_rate": round(float(np.mean(ordinary >= threshold)), 4),
    }
    if labels is not None:
        # Measured on a fresh generated history the forest never saw.
        held_out = generate_history(n_returns=3_000, seed=seed + 1_000)
        hx, hy = feature_matrix(held_out), np.array([r.abusive for r in held_out])
        held_scores = -forest.score_samples(hx)
        metrics.update(
            {
                "held_out_auroc": round(float(roc_auc_score(hy, held_scores)), 4),
                "held_out_recall_at_threshold": round(
                    float(np.mean(held_scores[hy] >= threshold)), 4
                ),
                "held_out_false_positive_rate": round(
                    float(np.mean(held_scores[~hy] >= threshold)), 4
                ),
            }
        )
    fill = {n: float(np.median(x[:, i])) for i, n in enumerate(FEATURE_NAMES)}
    payload = export_forest(
        forest,
        fill_values=fill,
        extra={
            "suggested_threshold": threshold,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": seed,
            "source": source,
            "sklearn_version": sklearn.__version__,
            "metrics": metrics,
        },
    )
    # The export must score exactly as scikit-learn does before anyone relies on it.
    exported = AnomalyModel(payload).score_matrix(x)
    if not np.allclose(exported, scores, atol=1e-9):
        raise RuntimeError("exported forest disagrees with scikit-learn; not writing it")

    out = Path(out)
    target = out if out.suffix == ".json" else out / MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, separators=(",", ":"))
    target.write_text(text, encoding="utf-8")
    card = {
        "name": "return-anomaly",
        "task": "anomaly",
        "version": payload["version"],
        "arch": f"IsolationForest(n_estimators={N_TREES}, max_samples={payload['max_samples']})",
        "file": target.name,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "features": list(FEATURE_NAMES),
        "score": "2^(-mean path length / c(max_samples)); 0..1, higher = more unusual",
        "data": source,
        "suggested_threshold": threshold,
        "metrics": metrics,
        "trained_at": payload["trained_at"],
        "sklearn_version": sklearn.__version__,
    }
    (target.parent / CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    logger.info("anomaly model %s written to %s (%s)", payload["version"], target, metrics)
    return target
