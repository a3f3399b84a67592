"""QA review and dashboard pages against the real API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from streamlit.testing.v1 import AppTest

from tests.station_ui.live_api import QA_KEY, Seeder
from tests.station_ui.ui_steps import assert_no_errors, click_in_form, page_text


def _overridden_return(seeder: Seeder) -> tuple[dict[str, Any], str]:
    """A return whose inspector overrode the grade (it lands in the QA queue), and that grade."""
    ret = seeder.received_return()
    model_grade = seeder.get_return(ret["id"])["item_grade"]["grade"]
    other = "reject" if model_grade != "reject" else "resell"
    body = {"grade": other, "reason": "hinge cracked"}
    return seeder.station_step(ret["id"], "inspection", json=body), other


def test_qa_queue_ranked_relabel_confusion_and_export(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret, override = _overridden_return(seeder)
    at = new_station_app().run()
    at.switch_page("views/qa.py").run()
    assert_no_errors(at)
    assert "Misgrade queue" in page_text(at)

    queue = httpx.get(
        f"{seeder.base_url}/v1/qa/queue", headers={"X-API-Key": QA_KEY}, params={"limit": 50}
    ).json()["data"]
    ours = [e for e in queue if e["return_id"] == ret["id"]]
    assert ours, "the override must put the return's photos in the QA queue"
    overridden = [e for e in ours if e["source"] == "station"]
    assert overridden and overridden[0]["human_grade"] == override, overridden
    assert "inspector_override" in overridden[0]["reasons"]
    titles = [x.label for x in at.expander if str(x.label).startswith("#")]
    assert len(titles) == len(queue)
    shown = [float(t.rsplit("mistakenness ", 1)[1]) for t in titles]
    assert shown == sorted(shown, reverse=True), "queue must be ranked by mistakenness"
    assert any(ret["rma"] in t for t in titles)

    photo_id = ours[0]["photo_id"]
    # The heatmap is drawn only when asked for, from the real API.
    shown_images = len(at.get("image"))
    at.toggle(key=f"heatmap_{photo_id}").set_value(True).run()
    assert_no_errors(at)
    assert len(at.get("image")) == shown_images + 1
    captions = [str(image.proto) for image in at.get("image")]
    assert sum("pushed the grade towards reject" in c for c in captions) == 1

    save = f"relabel_{photo_id}"
    click_in_form(at, save, "Save label")
    assert "a relabel needs a reason" in " ".join(e.value for e in at.error)
    at.selectbox(key=f"relabel_grade_{photo_id}").set_value("refurbish")
    at.text_input(key=f"relabel_reason_{photo_id}").input("scuff only, screen intact")
    click_in_form(at, save, "Save label")
    assert_no_errors(at)
    assert f"Photo {photo_id} relabelled refurbish" in page_text(at)

    export = at.get("download_button")
    assert export, "the corrections export must be offered as a download"
    exported = httpx.get(
        f"{seeder.base_url}/v1/qa/labels/export", headers={"X-API-Key": QA_KEY}
    ).json()
    rows = exported.get("data", exported) if isinstance(exported, dict) else exported
    assert any(r.get("photo_id") == photo_id and r.get("grade") == "refurbish" for r in rows)
    assert json.dumps(rows, default=str)  # what the button offers is plain JSON

    text = page_text(at)
    assert "rows: human grade, columns: model grade" in text
    assert "human-graded photos" in text
    assert at.dataframe, "the confusion matrix is shown as a table"


def test_dashboard_shows_rates_cycle_time_and_charts(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    ret = seeder.received_return()
    seeder.station_step(ret["id"], "inspection", json={"confirm": True})
    seeder.station_step(ret["id"], "refund")
    at = new_station_app().run()
    at.switch_page("views/dashboard.py").run()
    assert_no_errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Returns"]) >= 1
    assert metrics["Automation rate"].endswith("%")
    assert metrics["Manual review rate"].endswith("%")
    assert metrics["Refund cycle (median)"].endswith(" h")
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2, "grade mix and per-SKU charts"


def test_exception_queue_decision_from_the_qa_page(
    seeder: Seeder, new_station_app: Callable[[], AppTest]
) -> None:
    # Above the policy's auto-approve limit a person always decides.
    order = seeder.order(price_cents=60_000)
    ret, token = seeder.open_return(order)
    seeder.customer_photos(ret["id"], token)
    assert seeder.submit(ret["id"], token)["status"] == "needs_review"

    at = new_station_app().run()
    at.switch_page("views/qa.py").run()
    assert_no_errors(at)
    assert any(str(x.label).startswith(ret["rma"]) for x in at.expander)

    at.button(key=f"approve_{ret['id']}").click().run()
    assert "a decision needs a reason" in " ".join(e.value for e in at.error)
    assert seeder.get_return(ret["id"])["status"] == "needs_review"

    at.text_input(key=f"decide_reason_{ret['id']}").input("receipt and photos check out")
    at.button(key=f"approve_{ret['id']}").click().run()
    assert_no_errors(at)
    status = seeder.get_return(ret["id"])["status"]
    assert status in ("approved", "label_sent")
    assert f"{ret['rma']} approved: now {status}" in page_text(at)
