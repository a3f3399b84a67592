"""Station page against the real API: scan, photograph, receive, inspect, refund once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from station_ui.client import InspectionApi, refund_idempotency_key
from station_ui.display import GRADE_COLOUR as GRADE_COLOURS
from station_ui.display import format_money
from tests.station_ui.live_api import STATION_KEY, Seeder, customer_photo, station_photo
from tests.station_ui.ui_steps import assert_no_errors, click, page_text


def _scan(at: AppTest, code: str) -> AppTest:
    at.text_input(key="scan_code").input(code)
    return click(at, "Open")


def test_inspector_scans_photographs_receives_inspects_and_refunds(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.label_sent_return()
    at = new_station_app().run()
    assert_no_errors(at)

    _scan(at, ret["rma"].lower())  # a scanner may send lower case; the RMA still matches
    assert_no_errors(at)
    text = page_text(at)
    assert ret["rma"] in text and ret["order_number"] in text
    assert "Status: **Label sent**" in text
    assert "Customer photos (2)" in text
    assert at.dataframe[0].value["customer's reason"].tolist() == ["Defective"]

    at.file_uploader(key="station_files").set_value([("bench.jpg", station_photo(), "image/jpeg")])
    click(at, "Grade station photos")
    assert_no_errors(at)
    text = page_text(at)
    assert "1 station photo(s) graded" in text
    assert any(f"Station grade: :{c}[**{g}**]" in text for g, c in GRADE_COLOURS.items())
    assert "Station photos (1)" in text

    click(at, "Confirm receipt")
    assert_no_errors(at)
    assert "Status: **Item received**" in page_text(at)

    click(at, "Confirm grade")
    assert_no_errors(at)
    text = page_text(at)
    assert "Status: **Inspected**" in text
    quote = InspectionApi(seeder.base_url, api_key=STATION_KEY).refund_quote(ret["id"])
    assert f"Refund amount: **{format_money(quote['amount_cents'], quote['currency'])}**" in text

    release = next(b for b in at.button if str(b.label).startswith("Release refund"))
    assert release.disabled, "the refund must need the confirmation tick first"
    at.checkbox(key=f"refund_ok_{ret['id']}").check().run()
    click(at, "Release refund")
    assert_no_errors(at)
    text = page_text(at)
    assert "Refund released" in text
    assert "Status: **Refunded**" in text
    refund = seeder.get_return(ret["id"])["refund"]
    assert refund["amount_cents"] == quote["amount_cents"]
    assert refund["idempotency_key"] == refund_idempotency_key(return_id=ret["id"])
    assert f"Reference: **{refund.get('adapter_reference') or refund['id']}**" in text

    click(at, "Close return")
    assert_no_errors(at)
    assert "Status: **Closed**" in page_text(at)
    assert not [b for b in at.button if str(b.label).startswith(("Release", "Close"))]


def test_two_tabs_releasing_the_same_refund_pay_once(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.received_return()
    seeder.station_step(ret["id"], "inspection", json={"confirm": True})
    tabs = [new_station_app().run(), new_station_app().run()]
    for tab in tabs:
        _scan(tab, ret["rma"])
        tab.checkbox(key=f"refund_ok_{ret['id']}").check().run()
    # Both inspectors saw the button before either pressed it: a double release.
    for tab in tabs:
        click(tab, "Release refund")
        assert_no_errors(tab)
    refunds = {seeder.get_return(ret["id"])["refund"]["id"]}
    retry = InspectionApi(seeder.base_url, api_key=STATION_KEY).release_refund(
        ret["id"], idempotency_key=refund_idempotency_key(return_id=ret["id"])
    )
    refunds.add(retry["id"])
    assert len(refunds) == 1


def test_override_needs_a_reason_then_sets_the_grade(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.received_return()
    at = _scan(new_station_app().run(), ret["rma"])
    assert "Status: **Item received**" in page_text(at)

    at.selectbox(key="override_grade").set_value("reject")
    click(at, "Override grade")
    assert "an override needs a reason" in str([e.value for e in at.error])
    assert "Status: **Item received**" in page_text(at)

    at.selectbox(key="override_grade").set_value("reject")
    at.text_input(key="override_reason").input("housing cracked at the hinge")
    click(at, "Override grade")
    assert_no_errors(at)
    assert "Grade set to reject" in page_text(at)
    after = seeder.get_return(ret["id"])
    assert after["status"] == "inspected"
    assert after["item_grade"]["grade"] == "reject" or after["decision"]["refund"]["grade"] == (
        "reject"
    )


def test_unknown_rma_and_order_number_lookup(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    at = _scan(new_station_app().run(), "RMA-999999")
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "no return matches RMA-999999" in errors and "What to do" in errors

    ret = seeder.label_sent_return()
    _scan(at, ret["order_number"])
    assert_no_errors(at)
    assert ret["rma"] in page_text(at)


def test_station_photo_that_is_not_an_image_is_explained(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.label_sent_return()
    at = _scan(new_station_app().run(), ret["rma"])
    at.file_uploader(key="station_files").set_value([("notes.jpg", b"not a photo", "image/jpeg")])
    click(at, "Grade station photos")
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert errors.startswith("Could not grade the station photos")
    assert "Traceback" not in errors
    assert "Status: **Label sent**" in page_text(at)
    assert seeder.get_return(ret["id"])["status"] == "label_sent"


def test_stale_tab_gets_the_current_status_not_a_crash(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.label_sent_return()
    first, second = new_station_app().run(), new_station_app().run()
    _scan(first, ret["rma"])
    _scan(second, ret["rma"])
    click(first, "Confirm receipt")
    assert_no_errors(first)

    click(second, "Confirm receipt")  # this tab still shows label_sent
    assert not second.exception
    errors = " ".join(e.value for e in second.error)
    assert "Could not confirm receipt" in errors and "item_received" in errors
    assert "Status: **Item received**" in page_text(second), "the page reloads the return"


def test_reused_customer_photo_shows_fraud_evidence(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    photo = customer_photo(seed=77)
    returns: list[dict[str, Any]] = []
    for _ in range(2):  # two customers send the very same picture
        order = seeder.order()
        ret, token = seeder.open_return(order)
        files = [("files", ("same.jpg", photo, "image/jpeg"))]
        seeder.http.post(
            f"/v1/returns/{ret['id']}/photos",
            files=files,
            data={"source": "customer"},
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
        seeder.http.post(
            f"/v1/returns/{ret['id']}/photos",
            files=[("files", ("other.jpg", customer_photo(seed=78 + len(returns)), "image/jpeg"))],
            data={"source": "customer"},
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
        returns.append(seeder.submit(ret["id"], token))
    second = seeder.get_return(returns[1]["id"])  # customers never see the fraud evidence
    codes = {s["reason_code"] for s in second["decision"]["fraud_signals"]}
    assert "photo_reuse" in codes, second["decision"]

    at = _scan(new_station_app().run(), second["rma"])
    assert_no_errors(at)
    evidence = [x for x in at.expander if str(x.label).startswith("Fraud evidence")]
    assert evidence, [x.label for x in at.expander]
    assert "photo reuse" in page_text(at)
    assert "Decide this return" in page_text(at)


def test_station_camera_photo_is_graded(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.label_sent_return()
    at = _scan(new_station_app().run(), ret["rma"])
    at.toggle(key="station_use_camera").set_value(True).run()
    at.camera_input(key="station_camera").set_value(
        ("camera.jpg", station_photo(seed=41), "image/jpeg")
    )
    click(at, "Grade station photos")
    assert_no_errors(at)
    assert "1 station photo(s) graded" in page_text(at)
    photos = seeder.get_return(ret["id"])["photos"]
    assert [p["source"] for p in photos].count("station") == 1


def test_order_number_with_two_returns_offers_a_choice(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    order = seeder.order(lines=2)
    first, _ = seeder.open_return(order, line=0)
    second, _ = seeder.open_return(order, line=1)
    at = _scan(new_station_app().run(), order["order_number"])
    assert_no_errors(at)
    assert "2 returns match; pick one:" in page_text(at)
    at.button(key=f"pick_{second['id']}").click().run()
    assert_no_errors(at)
    text = page_text(at)
    assert second["rma"] in text and first["rma"] not in text
    assert "Status: **Return requested**" in text
