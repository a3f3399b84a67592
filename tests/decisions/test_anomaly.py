"""The anomaly model: the numpy runtime scores exactly as scikit-learn's IsolationForest, the
bundled export loads and separates abusive from ordinary returns, and training runs from a
generated history, a CSV and the service database."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sqlalchemy import Engine

from inspection.decisions.anomaly import (
    FEATURE_NAMES,
    AnomalyModel,
    load_anomaly_model,
    order_features,
)
from tests.decisions import factories as f
from training.anomaly import (
    export_forest,
    feature_matrix,
    generate_history,
    history_from_database,
    train_anomaly,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLED_MODEL = REPO / "models" / "anomaly" / "anomaly.json"


def _fill(x: np.ndarray) -> dict[str, float]:
    return {n: float(np.median(x[:, i])) for i, n in enumerate(FEATURE_NAMES)}


@pytest.fixture(scope="module")
def history() -> tuple[np.ndarray, np.ndarray]:
    rows = generate_history(n_returns=1_500, seed=3)
    return feature_matrix(rows), np.array([r.abusive for r in rows])


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_numpy_scores_equal_sklearn_score_samples(
    history: tuple[np.ndarray, np.ndarray], max_features: float
) -> None:
    x, _ = history
    forest = IsolationForest(
        n_estimators=40, max_samples=128, max_features=max_features, random_state=0
    ).fit(x)
    model = AnomalyModel(export_forest(forest, fill_values=_fill(x), extra={}))
    probe = np.vstack([x[:300], generate_history_matrix(seed=11)])
    ours = model.score_matrix(probe)
    theirs = -forest.score_samples(probe)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert (np.argsort(ours, kind="stable") == np.argsort(theirs, kind="stable")).all()
    # The single-row API gives the same numbers as the matrix path.
    first = dict(zip(FEATURE_NAMES, probe[0], strict=True))
    assert model.score(first) == pytest.approx(theirs[0], abs=1e-12)


def generate_history_matrix(*, seed: int) -> np.ndarray:
    return feature_matrix(generate_history(n_returns=200, seed=seed, abusive_fraction=0.3))


def test_bundled_model_loads_and_separates_abuse() -> None:
    model = load_anomaly_model(BUNDLED_MODEL)
    assert model is not None
    assert model.feature_names == FEATURE_NAMES
    assert model.version.startswith("anomaly-")
    rows = generate_history(n_returns=2_000, seed=777, abusive_fraction=0.1)
    scores = np.array(
        model.score_many(
            [order_features(customer=r.customer, order=r.order, claim=r.claim) for r in rows]
        )
    )
    abusive = np.array([r.abusive for r in rows])
    assert ((scores > 0) & (scores < 1)).all()
    assert scores[abusive].mean() > scores[~abusive].mean() + 0.05
    # The policy threshold flags few ordinary returns and many abusive ones.
    from inspection.decisions.policy import load_policy

    threshold = load_policy(REPO / "datasets/policy/returns-policy.yaml").fraud.anomaly_threshold
    assert np.mean(scores[~abusive] >= threshold) < 0.05
    assert np.mean(scores[abusive] >= threshold) > 0.5


def test_bundled_model_card_matches_the_file() -> None:
    import hashlib

    import yaml

    card = yaml.safe_load((BUNDLED_MODEL.parent / "model_card.yaml").read_text())
    assert card["sha256"] == hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    assert card["data"].startswith("generated:")  # never trained on real customer data


def test_order_features() -> None:
    features = order_features(
        customer=f.customer(orders_count=10, returns_count=4, returns_last_30d=1),
        order=f.order(order_value_cents=9_999, expedited_shipping=True, billing_country="FR"),
        claim=f.claim(
            reason_code="defective", quantity=2, requested_at=f.DELIVERED + timedelta(days=3)
        ),
    )
    assert list(features) == list(FEATURE_NAMES)
    assert features["order_value_log"] == pytest.approx(np.log1p(99.99))
    assert features["return_rate"] == 0.4
    assert features["days_since_delivery"] == 3.0
    assert features["expedited_shipping"] == features["country_mismatch"] == 1.0
    assert features["fault_claimed"] == 1.0
    assert features["claim_quantity"] == 2.0
    assert (
        features["account_age_days"]
        == (f.DELIVERED + timedelta(days=3) - datetime(2024, 1, 1, tzinfo=UTC)).days
    )


def test_missing_features_take_training_medians() -> None:
    model = load_anomaly_model(BUNDLED_MODEL)
    assert model is not None
    assert model.score({}) == pytest.approx(model.score(model.fill_values))
    assert model.score({"unknown_feature": 5.0}) == model.score({})
    assert model.score({"order_value_log": float("nan"), "orders_count": float("inf")}) == (
        model.score({})
    )


def test_missing_or_broken_file_turns_the_signal_off(tmp_path: Path) -> None:
    assert load_anomaly_model(tmp_path / "absent.json") is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert load_anomaly_model(broken) is None
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else"}))
    assert load_anomaly_model(wrong) is None


def test_train_on_generated_history_writes_model_and_card(tmp_path: Path) -> None:
    target = train_anomaly(database_url=None, history_csv=None, out=tmp_path / "anomaly", seed=1)
    assert target == tmp_path / "anomaly" / "anomaly.json"
    model = load_anomaly_model(target)
    assert model is not None
    payload = json.loads(target.read_text())
    assert payload["metrics"]["held_out_auroc"] > 0.9
    assert 0.5 < payload["suggested_threshold"] < 1
    assert (target.parent / "model_card.yaml").is_file()
    # Same seed, same forest.
    again = train_anomaly(database_url=None, history_csv=None, out=tmp_path / "again.json", seed=1)
    assert json.loads(again.read_text())["version"] == payload["version"]


def test_train_from_csv(tmp_path: Path) -> None:
    x = generate_history_matrix(seed=5)
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FEATURE_NAMES)
        writer.writerows(x.tolist())
    target = train_anomaly(database_url=None, history_csv=path, out=tmp_path / "m.json", seed=0)
    assert json.loads(target.read_text())["source"] == "csv:history.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("order_value_log\n1.0\n")
    with pytest.raises(ValueError, match="lacks feature column"):
        train_anomaly(database_url=None, history_csv=bad, out=tmp_path / "x.json")


def _id(row: object) -> int:
    value = getattr(row, "id", None)
    assert isinstance(value, int), "flush assigns ids"
    return value


def test_train_from_the_service_database(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """Runs on the migrated schema, on SQLite and (when configured) PostgreSQL."""
    from sqlmodel import Session

    from inspection.store.models import Customer, Order, OrderLine, Return, ReturnItem

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        for c in range(4):
            customer = Customer(
                external_id=f"c{c}",
                email=f"c{c}@example.com",
                created_at=start - timedelta(days=30 * c),
            )
            session.add(customer)
            session.flush()
            for o in range(4):
                ordered = start + timedelta(days=10 * o + c)
                order = Order(
                    order_number=f"O-{c}-{o}",
                    customer_id=_id(customer),
                    currency="EUR",
                    ordered_at=ordered,
                    delivered_at=ordered + timedelta(days=2),
                    shipping_country="DE",
                    billing_country="DE" if c else "FR",
                )
                session.add(order)
                session.flush()
                line = OrderLine(
                    order_id=_id(order),
                    sku="S",
                    name="Shirt",
                    category="apparel",
                    price_cents=2_500 * (o + 1),
                    currency="EUR",
                    quantity=1,
                )
                session.add(line)
                session.flush()
                ret = Return(
                    order_id=_id(order),
                    customer_id=_id(customer),
                    created_at=ordered + timedelta(days=5),
                )
                session.add(ret)
                session.flush()
                session.add(
                    ReturnItem(
                        return_id=_id(ret), order_line_id=_id(line), reason_code="wrong_size"
                    )
                )
        session.commit()

    rows = history_from_database(database_url)
    assert len(rows) == 16
    last = max(rows, key=lambda r: (r.customer.customer_id, r.claim.requested_at))
    assert last.customer.orders_count == 4  # orders placed up to that return
    assert last.customer.returns_count == 3  # returns before it
    target = train_anomaly(
        database_url=database_url, history_csv=None, out=tmp_path / "db.json", seed=0
    )
    assert json.loads(target.read_text())["source"] == "database"


def test_anomaly_score_for_fraud_inputs() -> None:
    from inspection.decisions.anomaly import ANOMALY_MODEL_FILE, anomaly_score

    model = load_anomaly_model(REPO / "models" / ANOMALY_MODEL_FILE)
    ordinary = anomaly_score(model=model, customer=f.customer(), order=f.order(), claim=f.claim())
    abusive = anomaly_score(
        model=model,
        customer=f.customer(
            account_created_at=f.CLAIMED - timedelta(days=3),
            orders_count=1,
            returns_count=3,
            returns_last_30d=3,
            returns_last_90d=3,
            prior_fraud_flags=1,
        ),
        order=f.order(order_value_cents=180_000, expedited_shipping=True, billing_country="NG"),
        claim=f.claim(
            reason_code="defective", quantity=3, requested_at=f.DELIVERED + timedelta(hours=5)
        ),
    )
    assert ordinary is not None and abusive is not None
    assert abusive > ordinary
    assert (
        anomaly_score(model=None, customer=f.customer(), order=f.order(), claim=f.claim()) is None
    )
