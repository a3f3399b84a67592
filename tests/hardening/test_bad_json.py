"""Bad JSON on every JSON endpoint: wrong types, huge numbers, negative money, unknown enum values,
Unicode oddities (NUL, lone surrogates, RTL overrides), 1 MB strings, missing fields, oversize
and malformed bodies. Each gets a 4xx with a message, and nothing is written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.database import ADMIN, INTEGRATION, QA, STATION, order_payload
from tests.hardening.conftest import (
    BODY_LIMIT_BYTES,
    OpenReturn,
    StoreSnapshot,
    assert_clear_4xx,
)

MEGA = "x" * 1_000_000
NUL = "abc\u0000def"
LONE_SURROGATE = "ab\ud800cd"  # not encodable as UTF-8: a database driver would choke on it
RTL_OVERRIDE = "RMA\u202e321"  # shows as "RMA123" reversed: spoofs identifiers in a UI
ZERO_WIDTH = "T-1\u200b2"
ROLE_HEADERS = {
    "integration": INTEGRATION,
    "admin": ADMIN,
    "station": STATION,
    "qa": QA,
    "none": {},
}
MISSING = object()
# Bugs these tests found, left to the owners of the code (strict: the test fails once fixed,
# so the marker is removed then). Keys are test ids without the backend prefix.
KNOWN_BUGS: dict[str, str] = {
    # Found by these tests and since fixed by their owners: NUL in customer.email and in sku,
    # a 1 MB webhook URL, unbounded customer_id and photo_id (integer overflow 500s).
}


def _case(case_id: str, *values: Any) -> Any:
    """A pytest.param, marked xfail(strict) when it is a known, reported bug."""
    reason = KNOWN_BUGS.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=f"known bug: {reason}")] if reason else []
    return pytest.param(*values, id=case_id, marks=marks)


@dataclass(frozen=True)
class Mutation:
    """Sets (or with MISSING, deletes) one field of a valid body, addressed by a path."""

    name: str
    path: tuple[str | int, ...]
    value: Any

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(body)
        target: Any = out
        for key in self.path[:-1]:
            target = target[key]
        if self.value is MISSING:
            del target[self.path[-1]]
        else:
            target[self.path[-1]] = self.value
        return out


ORDER_MUTATIONS = [
    Mutation("price_as_string", ("lines", 0, "price_cents"), "4999"),
    Mutation("price_as_float_money", ("lines", 0, "price_cents"), 49.99),
    Mutation("price_negative", ("lines", 0, "price_cents"), -100),
    Mutation("price_huge", ("lines", 0, "price_cents"), 10**30),
    Mutation("price_bool", ("lines", 0, "price_cents"), True),
    Mutation("price_null", ("lines", 0, "price_cents"), None),
    Mutation("quantity_zero", ("lines", 0, "quantity"), 0),
    Mutation("quantity_huge", ("lines", 0, "quantity"), 10**20),
    Mutation("quantity_word", ("lines", 0, "quantity"), "two"),
    Mutation("final_sale_string", ("lines", 0, "final_sale"), "false"),
    Mutation("currency_lowercase", ("currency",), "eur"),
    Mutation("currency_symbol", ("currency",), "\u20ac"),
    Mutation("currency_number", ("currency",), 978),
    Mutation("ordered_at_words", ("ordered_at",), "yesterday"),
    Mutation("ordered_at_impossible", ("ordered_at",), "2026-13-45T10:00:00Z"),
    Mutation("ordered_at_naive", ("ordered_at",), "2026-11-01T10:00:00"),
    Mutation("order_number_nul", ("order_number",), NUL),
    Mutation("order_number_surrogate", ("order_number",), LONE_SURROGATE),
    Mutation("order_number_rtl_override", ("order_number",), RTL_OVERRIDE),
    Mutation("order_number_zero_width", ("order_number",), ZERO_WIDTH),
    Mutation("order_number_1mb", ("order_number",), MEGA),
    Mutation("order_number_empty", ("order_number",), ""),
    Mutation("order_number_missing", ("order_number",), MISSING),
    Mutation("email_invalid", ("customer", "email"), "not-an-email"),
    Mutation("email_nul", ("customer", "email"), "a\u0000b@example.com"),
    Mutation("customer_name_1mb", ("customer", "name"), MEGA),
    Mutation("customer_name_surrogate", ("customer", "name"), LONE_SURROGATE),
    Mutation("customer_missing", ("customer",), MISSING),
    Mutation("customer_is_string", ("customer",), "alice"),
    Mutation("lines_empty", ("lines",), []),
    Mutation("lines_not_a_list", ("lines",), "PHONE-1"),
    Mutation("line_empty_object", ("lines",), [{}]),
    Mutation("sku_nul", ("lines", 0, "sku"), NUL),
    Mutation("line_name_1mb", ("lines", 0, "name"), MEGA),
    Mutation("category_1mb", ("lines", 0, "category"), MEGA),
    Mutation("expedited_word", ("expedited_shipping",), "yes"),
    Mutation("country_name", ("shipping_country",), "Germany"),
    Mutation("unknown_field", ("is_admin",), True),
]

RETURN_MUTATIONS = [
    Mutation("items_missing", ("items",), MISSING),
    Mutation("items_empty", ("items",), []),
    Mutation("line_id_string", ("items", 0, "order_line_id"), "1"),
    Mutation("line_id_huge", ("items", 0, "order_line_id"), 10**20),
    Mutation("line_id_negative", ("items", 0, "order_line_id"), -1),
    Mutation("line_id_unknown", ("items", 0, "order_line_id"), 987_654),
    Mutation("reason_unknown_enum", ("items", 0, "reason_code"), "broken"),
    Mutation("reason_null", ("items", 0, "reason_code"), None),
    Mutation("quantity_zero", ("items", 0, "quantity"), 0),
    Mutation("quantity_more_than_ordered", ("items", 0, "quantity"), 9_999),
    Mutation("quantity_huge", ("items", 0, "quantity"), 10**20),
    Mutation("reason_text_1mb", ("items", 0, "reason_text"), MEGA),
    Mutation("reason_text_surrogate", ("items", 0, "reason_text"), LONE_SURROGATE),
    Mutation("email_nul", ("email",), NUL),
    Mutation("email_wrong", ("email",), "someone-else@example.com"),
    Mutation("order_number_1mb", ("order_number",), MEGA),
    Mutation("order_number_surrogate", ("order_number",), LONE_SURROGATE),
    Mutation("order_number_number", ("order_number",), 12345),
]

DECISION_BASE = {"outcome": "approve", "reason": "photos match the claim"}
DECISION_MUTATIONS = [
    Mutation("outcome_unknown", ("outcome",), "maybe"),
    Mutation("outcome_number", ("outcome",), 1),
    Mutation("outcome_missing", ("outcome",), MISSING),
    Mutation("reason_empty", ("reason",), ""),
    Mutation("reason_1mb", ("reason",), MEGA),
    Mutation("reason_surrogate", ("reason",), LONE_SURROGATE),
]

INSPECTION_BASE = {"grade": "refurbish", "reason": "scuffed corner"}
INSPECTION_MUTATIONS = [
    Mutation("grade_unknown", ("grade",), "mint"),
    Mutation("override_without_reason", ("reason",), MISSING),
    Mutation("reason_1mb", ("reason",), MEGA),
    Mutation("confirm_string", ("confirm",), "true"),
    Mutation("grade_list", ("grade",), ["resell"]),
]

LABEL_BASE = {"photo_id": 1, "grade": "reject", "reason": "crack visible on the left edge"}
LABEL_MUTATIONS = [
    Mutation("photo_id_string", ("photo_id",), "one"),
    Mutation("photo_id_huge", ("photo_id",), 10**30),
    Mutation("photo_id_negative", ("photo_id",), -1),
    Mutation("grade_unknown", ("grade",), "perfect"),
    Mutation("reason_missing", ("reason",), MISSING),
    Mutation("reason_surrogate", ("reason",), LONE_SURROGATE),
]

WEBHOOK_BASE = {"url": "http://127.0.0.1:9/hook", "events": ["*"]}
WEBHOOK_MUTATIONS = [
    Mutation("url_not_a_url", ("url",), "not a url"),
    Mutation("url_file_scheme", ("url",), "file:///etc/passwd"),
    Mutation("url_1mb", ("url",), "http://example.com/" + MEGA),
    Mutation("events_empty", ("events",), []),
    Mutation("events_unknown", ("events",), ["return.teleported"]),
    Mutation("events_string", ("events",), "*"),
    Mutation("secret_1mb", ("secret",), MEGA),
    Mutation("url_missing", ("url",), MISSING),
]


@dataclass(frozen=True)
class Endpoint:
    """A JSON endpoint, who may call it, and how to build a valid body for it."""

    name: str
    method: str
    path: str
    role: str
    valid_body: Callable[[TestClient, OpenReturn], dict[str, Any]]
    mutations: list[Mutation]


def _order_body(_: TestClient, __: OpenReturn) -> dict[str, Any]:
    return order_payload()


def _import_body(_: TestClient, __: OpenReturn) -> dict[str, Any]:
    return {"orders": [order_payload()]}


def _return_body(_: TestClient, case: OpenReturn) -> dict[str, Any]:
    return {
        "order_number": case.order["order_number"],
        "email": case.order["customer"]["email"],
        "items": [
            {
                "order_line_id": case.order["lines"][0]["id"],
                "quantity": 1,
                "reason_code": "defective",
                "reason_text": "screen flickers",
            }
        ],
    }


ENDPOINTS = [
    Endpoint("orders", "POST", "/v1/orders", "integration", _order_body, ORDER_MUTATIONS),
    Endpoint(
        "orders_import",
        "POST",
        "/v1/orders/import",
        "integration",
        _import_body,
        [Mutation(m.name, ("orders", 0, *m.path), m.value) for m in ORDER_MUTATIONS[:12]],
    ),
    Endpoint("returns", "POST", "/v1/returns", "none", _return_body, RETURN_MUTATIONS),
    Endpoint(
        "decision",
        "POST",
        "/v1/returns/{id}/decision",
        "admin",
        lambda *_: dict(DECISION_BASE),
        DECISION_MUTATIONS,
    ),
    Endpoint(
        "inspection",
        "POST",
        "/v1/returns/{id}/inspection",
        "station",
        lambda *_: dict(INSPECTION_BASE),
        INSPECTION_MUTATIONS,
    ),
    Endpoint(
        "qa_labels", "POST", "/v1/qa/labels", "qa", lambda *_: dict(LABEL_BASE), LABEL_MUTATIONS
    ),
    Endpoint(
        "webhooks",
        "POST",
        "/v1/webhooks",
        "integration",
        lambda *_: dict(WEBHOOK_BASE),
        WEBHOOK_MUTATIONS,
    ),
]

FIELD_CASES = [_case(f"{e.name}-{m.name}", e, m) for e in ENDPOINTS for m in e.mutations]


def _send(
    client: TestClient, endpoint: Endpoint, case: OpenReturn, *, content: bytes, content_type: str
) -> Any:
    return client.request(
        endpoint.method,
        endpoint.path.format(id=case.id),
        content=content,
        headers={**ROLE_HEADERS[endpoint.role], "Content-Type": content_type},
    )


def _json_bytes(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes: valid JSON text, invalid Unicode.
    return json.dumps(body, ensure_ascii=True).encode("ascii")


@pytest.mark.parametrize(("endpoint", "mutation"), FIELD_CASES)
def test_bad_field_is_a_clear_4xx_and_writes_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    endpoint: Endpoint,
    mutation: Mutation,
) -> None:
    body = mutation.apply(endpoint.valid_body(hardening_client, open_return_case))
    before = snapshot()
    response = _send(
        hardening_client,
        endpoint,
        open_return_case,
        content=_json_bytes(body),
        content_type="application/json",
    )
    assert_clear_4xx(response)
    assert snapshot() == before


MALFORMED = [
    ("truncated", b'{"order_number": "T-1", "lines": [', "application/json"),
    ("trailing_garbage", b'{"a": 1} {"b": 2}', "application/json"),
    ("single_quotes", b"{'order_number': 'T-1'}", "application/json"),
    ("empty", b"", "application/json"),
    ("null", b"null", "application/json"),
    ("array", b"[]", "application/json"),
    ("number", b"123", "application/json"),
    ("nan", b'{"price_cents": NaN}', "application/json"),
    ("invalid_utf8", b'{"order_number": "\xff\xfe"}', "application/json"),
    ("deep_nesting", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("text_plain", b'{"order_number": "T-1"}', "text/plain"),
    ("form_encoded", b"order_number=T-1", "application/x-www-form-urlencoded"),
]
MALFORMED_CASES = [(e, m) for e in ENDPOINTS for m in MALFORMED]


@pytest.mark.parametrize(
    ("endpoint", "malformed"),
    MALFORMED_CASES,
    ids=[f"{e.name}-{m[0]}" for e, m in MALFORMED_CASES],
)
def test_malformed_body_is_a_clear_4xx_and_writes_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    endpoint: Endpoint,
    malformed: tuple[str, bytes, str],
) -> None:
    _, content, content_type = malformed
    before = snapshot()
    response = _send(
        hardening_client, endpoint, open_return_case, content=content, content_type=content_type
    )
    assert_clear_4xx(response)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_oversize_body_is_413_and_writes_nothing(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    endpoint: Endpoint,
) -> None:
    body = endpoint.valid_body(hardening_client, open_return_case)
    body["padding"] = "x" * (BODY_LIMIT_BYTES + 1)
    before = snapshot()
    response = _send(
        hardening_client,
        endpoint,
        open_return_case,
        content=_json_bytes(body),
        content_type="application/json",
    )
    assert_clear_4xx(response, status=413)
    assert snapshot() == before


BAD_QUERIES = [
    ("/v1/returns?limit=-1", "station"),
    ("/v1/returns?limit=" + "9" * 30, "station"),
    ("/v1/returns?limit=ten", "station"),
    ("/v1/returns?offset=-5", "station"),
    ("/v1/returns?status=teleported", "station"),
    ("/v1/returns?created_from=last-week", "station"),
    ("/v1/returns?customer_id=" + "9" * 30, "station"),
    ("/v1/returns/" + "9" * 30, "station"),
    ("/v1/returns/-1", "station"),
    ("/v1/orders/" + "x" * 5000, "integration"),
    ("/v1/photos/0/image", "station"),
    ("/v1/photos/" + "9" * 30 + "/image", "station"),
    ("/v1/qa/queue?limit=0", "qa"),
    ("/v1/qa/confusion?since=not-a-date", "qa"),
    ("/v1/qa/labels/export?since=31-12-2026", "qa"),
    ("/v1/stats?since=soon", "station"),
    ("/v1/webhooks/deliveries?status=lost", "integration"),
    ("/v1/returns/{id}/audit", "none"),
    ("/v1/returns/{id}", "qa_wrong_key"),
]


@pytest.mark.parametrize(("path", "role"), [_case(p, p, r) for p, r in BAD_QUERIES])
def test_bad_query_or_path_is_a_clear_4xx(
    hardening_client: TestClient, open_return_case: OpenReturn, path: str, role: str
) -> None:
    headers = {"X-API-Key": "not-a-key"} if role == "qa_wrong_key" else ROLE_HEADERS[role]
    response = hardening_client.get(path.format(id=open_return_case.id), headers=headers)
    assert_clear_4xx(response)


@pytest.mark.parametrize(
    "key",
    ["k" * 10_000, "", "key with\ttab", "caf\u00e9-key"],
    ids=["10kB", "empty", "control_char", "non_ascii"],
)
def test_bad_idempotency_key_never_pays_and_never_500s(
    hardening_client: TestClient,
    open_return_case: OpenReturn,
    snapshot: Callable[[], StoreSnapshot],
    key: str,
) -> None:
    """A refund attempt with a broken key on a return that is not refundable writes nothing."""
    before = snapshot()
    response = hardening_client.post(
        f"/v1/returns/{open_return_case.id}/refund",
        headers={**STATION, "Idempotency-Key": key.encode("utf-8")},
    )
    assert_clear_4xx(response)
    assert snapshot() == before
