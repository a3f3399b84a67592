"""Station page: an inspector scans an RMA, photographs the item, confirms receipt and grade,
and releases the refund.

Actions run in button callbacks, before the page is drawn, so the page always shows the
return as the API has it after the action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from station_ui.client import JSON, ApiError, Grade, InspectionApi, refund_idempotency_key
from station_ui.display import (
    GRADES,
    REASON_LABEL,
    STATUS_LABEL,
    call_api,
    draw_messages,
    format_grade,
    format_money,
    render_decision,
    render_item_grade,
    render_photo_grid,
    render_quality,
)
from station_ui.settings import load_settings

# What the page offers follows the API's `allowed_actions`; where an older API sends none,
# these statuses stand in for them (docs/api.md, Statuses).
FALLBACK_ACTIONS: dict[str, tuple[str, ...]] = {
    "needs_review": ("decide",),
    "label_sent": ("add_station_photos", "receive"),
    "item_received": ("add_station_photos", "inspect"),
    "inspected": ("refund", "close"),
    "refunded": ("close",),
    "rejected": ("close",),
}
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif"]

K_RETURN = "station_return_id"
K_CANDIDATES = "station_candidates"
K_FLASH = "station_flash"
K_ERROR = "station_error"
K_UPLOAD = "station_last_upload"


def station_api() -> InspectionApi:
    """The API client with the station's key."""
    settings = load_settings()
    return InspectionApi(
        settings.api_url,
        api_key=settings.station_key,
        timeout_seconds=settings.timeout_seconds,
        upload_timeout_seconds=settings.upload_timeout_seconds,
    )


def _run_action(action: str, fn: Callable[[], Any], done: str) -> Any:
    """Runs an action from a callback; the outcome is shown on the next draw of the page."""
    try:
        result = fn()
    except ApiError as error:
        st.session_state[K_ERROR] = (action, error)
        return None
    st.session_state[K_FLASH] = done
    st.session_state.pop(K_ERROR, None)
    st.session_state.pop(K_UPLOAD, None)  # the upload panel described the step before this
    return result


# -- callbacks --------------------------------------------------------------------------------


def _on_scan() -> None:
    code = str(st.session_state.get("scan_code", "")).strip()
    st.session_state.pop(K_CANDIDATES, None)
    st.session_state.pop(K_UPLOAD, None)
    st.session_state.pop(K_ERROR, None)
    st.session_state.pop(K_FLASH, None)
    if not code:
        return
    api = station_api()
    looks_like_rma = code.upper().startswith("RMA")
    try:
        lookups = (
            [("rma", code.upper()), ("order_number", code)]
            if looks_like_rma
            else [("order_number", code), ("rma", code.upper())]
        )
        found: list[JSON] = []
        for field, value in lookups:
            page = (
                api.find_returns(rma=value)
                if field == "rma"
                else api.find_returns(order_number=value)
            )
            found = list(page.get("data") or [])
            if found:
                break
    except ApiError as error:
        st.session_state[K_ERROR] = (f"look up {code}", error)
        return
    if not found:
        st.session_state[K_ERROR] = (
            f"open {code}",
            ApiError(
                message=f"no return matches {code}",
                hint="check the RMA on the label (RMA-000123) or scan the order number",
                code="not_found",
            ),
        )
        st.session_state.pop(K_RETURN, None)
    elif len(found) == 1:
        st.session_state[K_RETURN] = int(found[0]["id"])
    else:
        st.session_state.pop(K_RETURN, None)
        st.session_state[K_CANDIDATES] = found


def _on_pick(return_id: int) -> None:
    st.session_state[K_RETURN] = return_id
    st.session_state.pop(K_CANDIDATES, None)


def _on_upload(return_id: int, only_item_id: int | None) -> None:
    # One item: the photos are of it. Several: the inspector said which one.
    item_id = only_item_id if only_item_id is not None else st.session_state.get("station_item")
    photos: list[tuple[str, bytes, str]] = []
    for uploaded in st.session_state.get("station_files") or []:
        photos.append((uploaded.name, uploaded.getvalue(), uploaded.type or "image/jpeg"))
    camera = st.session_state.get("station_camera")
    if camera is not None:
        photos.append((camera.name or "camera.jpg", camera.getvalue(), camera.type or "image/jpeg"))
    if not photos:
        st.session_state[K_ERROR] = (
            "grade photos",
            ApiError(message="no photo chosen", hint="take a photo or choose files first"),
        )
        return
    api = station_api()
    result = _run_action(
        "grade the station photos",
        lambda: api.upload_photos(
            return_id, photos=photos, source="station", return_item_id=item_id
        ),
        f"{len(photos)} station photo(s) graded",
    )
    if result is not None:
        st.session_state[K_UPLOAD] = result


def _on_receive(return_id: int) -> None:
    api = station_api()
    _run_action("confirm receipt", lambda: api.receive_return(return_id), "Receipt confirmed")


def _on_confirm_grade(return_id: int) -> None:
    api = station_api()
    _run_action(
        "confirm the grade", lambda: api.confirm_inspection(return_id), "Inspection confirmed"
    )


def _on_override(return_id: int) -> None:
    grade: Grade = st.session_state.get("override_grade", "refurbish")
    reason = str(st.session_state.get("override_reason", "")).strip()
    if not reason:
        st.session_state[K_ERROR] = (
            "override the grade",
            ApiError(message="an override needs a reason", hint="write what you saw on the item"),
        )
        return
    api = station_api()
    _run_action(
        "override the grade",
        lambda: api.override_grade(return_id, grade=grade, reason=reason),
        f"Grade set to {grade}",
    )


def _on_review(return_id: int, outcome: str) -> None:
    reason = str(st.session_state.get("review_reason", "")).strip()
    if not reason:
        st.session_state[K_ERROR] = (
            f"{outcome} the return",
            ApiError(message="a decision needs a reason", hint="write why in the reason field"),
        )
        return
    api = station_api()
    _run_action(
        f"{outcome} the return",
        lambda: api.decide_return(return_id, outcome=outcome, reason=reason),  # type: ignore[arg-type]
        f"Return {outcome}d",
    )


def _on_close(return_id: int) -> None:
    api = station_api()
    _run_action("close the return", lambda: api.close_return(return_id), "Return closed")


def _on_refund(return_id: int) -> None:
    if not st.session_state.get(f"refund_ok_{return_id}"):
        st.session_state[K_ERROR] = (
            "release the refund",
            ApiError(message="the refund is not confirmed", hint="tick the confirmation first"),
        )
        return
    api = station_api()
    refund = _run_action(
        "release the refund",
        lambda: api.release_refund(
            return_id, idempotency_key=refund_idempotency_key(return_id=return_id)
        ),
        "Refund released",
    )
    if refund is not None:
        st.session_state[K_FLASH] = (
            f"Refund released: {format_money(refund.get('amount_cents'), refund.get('currency'))}"
            f", reference {refund.get('adapter_reference') or refund.get('id')}"
        )


# -- drawing ----------------------------------------------------------------------------------


def _draw_messages() -> None:
    draw_messages(flash_key=K_FLASH, error_key=K_ERROR)


def _draw_scan() -> None:
    with st.form("scan", clear_on_submit=True, border=False):
        cols = st.columns([4, 1], vertical_alignment="bottom")
        cols[0].text_input(
            "Scan or type an RMA or order number, then Enter",
            key="scan_code",
            placeholder="RMA-000123 or order number",
        )
        cols[1].form_submit_button("Open", type="primary", on_click=_on_scan, width="stretch")
    # A barcode scanner types into whatever has focus: put the cursor in the scan field. The
    # input may mount after this script runs, so look again for a few seconds.
    st.html(
        """<script>
        let tries = 0;
        const focusScan = () => {
          const sel = 'input[aria-label^="Scan or type"]';
          const f = window.parent.document.querySelector(sel) || document.querySelector(sel);
          if (f) {
            if (f.ownerDocument.activeElement?.tagName !== 'INPUT') { f.focus(); }
            return;
          }
          if (++tries < 50) { setTimeout(focusScan, 100); }
        };
        focusScan();
        </script>""",
        unsafe_allow_javascript=True,
    )


def _draw_candidates() -> None:
    candidates: list[JSON] = st.session_state.get(K_CANDIDATES) or []
    if not candidates:
        return
    st.write(f"{len(candidates)} returns match; pick one:")
    for summary in candidates:
        label = f"{summary.get('rma')} · {STATUS_LABEL.get(summary.get('status', ''), '?')}"
        st.button(label, key=f"pick_{summary['id']}", on_click=_on_pick, args=(int(summary["id"]),))


def _draw_header(ret: JSON) -> None:
    status = str(ret.get("status", ""))
    st.subheader(f"{ret.get('rma')} · order {ret.get('order_number')}")
    st.markdown(f"Status: **{STATUS_LABEL.get(status, status)}**")
    rows = [
        {
            "sku": item.get("sku"),
            "item": item.get("name"),
            "category": item.get("category"),
            "price": format_money(item.get("price_cents"), item.get("currency")),
            "qty": item.get("quantity"),
            "customer's reason": REASON_LABEL.get(item.get("reason_code", ""), "?"),
            "customer's words": item.get("reason_text") or "",
        }
        for item in ret.get("items") or []
    ]
    st.dataframe(rows, hide_index=True, width="stretch")


def _draw_photos(api: InspectionApi, ret: JSON) -> None:
    photos = ret.get("photos") or []
    customer = [p for p in photos if p.get("source") == "customer"]
    station = [p for p in photos if p.get("source") == "station"]
    st.markdown(f"#### Customer photos ({len(customer)})")
    if customer:
        render_photo_grid(api, customer)
    else:
        st.caption("the customer sent no photos")
    st.markdown(f"#### Station photos ({len(station)})")
    if station:
        render_photo_grid(api, station)
    else:
        st.caption("no station photos yet")


def _draw_capture(ret: JSON) -> None:
    return_id = int(ret["id"])
    st.markdown("#### Photograph the item")
    # Outside the form: a toggle inside a form would only take effect on submit.
    use_camera = st.toggle("Use the station camera", key="station_use_camera")
    items = ret.get("items") or []
    only_item_id = int(items[0]["id"]) if len(items) == 1 else None
    with st.form("station_photos", clear_on_submit=True):
        if len(items) > 1:
            names = {int(i["id"]): f"{i.get('name')} ({i.get('sku')})" for i in items}
            st.selectbox(
                "Item in the photos",
                [int(i["id"]) for i in items],
                format_func=lambda item_id: names[item_id],
                key="station_item",
            )
        if use_camera:
            st.camera_input("Station camera", key="station_camera")
        st.file_uploader(
            "Upload photos" if not use_camera else "or upload photos",
            type=PHOTO_TYPES,
            accept_multiple_files=True,
            key="station_files",
        )
        st.form_submit_button(
            "Grade station photos",
            type="primary",
            on_click=_on_upload,
            args=(return_id, only_item_id),
        )


def _draw_last_upload(ret: JSON) -> None:
    result = st.session_state.get(K_UPLOAD)
    if not result:
        return
    photos = result.get("photos") or []
    if photos and photos[0].get("id") not in {p.get("id") for p in ret.get("photos") or []}:
        return  # a result from another return
    with st.container(border=True):
        st.markdown("#### Station grade")
        render_item_grade(result.get("item_grade"), title="Station grade")
        for photo in photos:
            quality = photo.get("quality") or {}
            if quality.get("flags") or not quality.get("passed", True):
                st.markdown(f"Photo {photo.get('id')}:")
                render_quality(quality)


def _draw_receive(ret: JSON) -> None:
    st.markdown("#### Receipt")
    station_photos = [p for p in ret.get("photos") or [] if p.get("source") == "station"]
    if not station_photos:
        st.caption("Photograph the item first so it can be compared with the customer's photos.")
    st.button(
        "Confirm receipt",
        type="primary",
        key="confirm_receipt",
        on_click=_on_receive,
        args=(int(ret["id"]),),
    )


def _draw_inspection(ret: JSON) -> None:
    return_id = int(ret["id"])
    st.markdown("#### Inspection")
    grade = (ret.get("item_grade") or {}).get("grade")
    st.button(
        f"Confirm grade: {format_grade(grade)}",
        type="primary",
        key="confirm_grade",
        on_click=_on_confirm_grade,
        args=(return_id,),
        disabled=grade is None,
    )
    with st.expander("Override the grade", expanded=False), st.form("override"):
        default = GRADES.index(grade) if grade in GRADES else 0
        st.selectbox("Grade", GRADES, index=default, key="override_grade")
        st.text_input("Reason (required)", key="override_reason")
        st.form_submit_button("Override grade", on_click=_on_override, args=(return_id,))


def _draw_review(ret: JSON) -> None:
    return_id = int(ret["id"])
    st.markdown("#### Decide this return")
    st.text_input("Reason for the decision (required)", key="review_reason")
    cols = st.columns(2)
    cols[0].button(
        "Approve", key="review_approve", on_click=_on_review, args=(return_id, "approve")
    )
    cols[1].button("Reject", key="review_reject", on_click=_on_review, args=(return_id, "reject"))


def allowed_actions(ret: JSON) -> set[str]:
    """The next steps the API allows for this return."""
    actions = ret.get("allowed_actions")
    if actions is None:
        actions = FALLBACK_ACTIONS.get(str(ret.get("status")), ())
    return set(actions)


def _draw_refund(api: InspectionApi, ret: JSON) -> None:
    return_id = int(ret["id"])
    refund = ret.get("refund")
    if refund:
        with st.container(border=True):
            st.markdown("#### Refund")
            amount = format_money(refund.get("amount_cents"), refund.get("currency"))
            st.markdown(f"Refunded: :green[**{amount}**] · status **{refund.get('status')}**")
            st.markdown(f"Reference: **{refund.get('adapter_reference') or refund.get('id')}**")
            st.caption(
                f"refund {refund.get('id')} via {refund.get('adapter')}, "
                f"idempotency key {refund.get('idempotency_key')}"
            )
        return
    decision = ret.get("decision") or {}
    if ret.get("status") == "inspected" and decision.get("outcome") == "needs_review":
        # The API refuses the release (409 refund_on_hold) until QA or an admin decides.
        reasons = ", ".join(decision.get("reason_codes") or []) or "no reason recorded"
        st.warning(
            f"Refund on hold: the inspection decision needs a reviewer ({reasons}). "
            "QA decides on the QA page; the refund can be released after an approval."
        )
        return
    if "refund" not in allowed_actions(ret):
        return
    quote = call_api("get the refund quote", lambda: api.refund_quote(return_id))
    if quote is None:
        return
    with st.container(border=True):
        st.markdown("#### Refund")
        currency = quote.get("currency")
        amount = format_money(quote.get("amount_cents"), currency)
        st.markdown(f"Refund amount: **{amount}**")
        st.caption(
            f"item price {format_money(quote.get('gross_cents'), currency)} · "
            f"grade {quote.get('grade')} · policy {quote.get('policy_version')}"
        )
        for deduction in quote.get("deductions") or []:
            st.caption(
                f"− {format_money(deduction.get('amount_cents'), currency)}: "
                f"{deduction.get('reason')}"
            )
        confirmed = st.checkbox(
            f"I checked the item: refund {amount} to the customer", key=f"refund_ok_{return_id}"
        )
        st.button(
            f"Release refund of {amount}",
            type="primary",
            key="release_refund",
            disabled=not confirmed,
            on_click=_on_refund,
            args=(return_id,),
        )


def _draw_close(ret: JSON) -> None:
    st.button("Close return", key="close_return", on_click=_on_close, args=(int(ret["id"]),))


def _draw_history(api: InspectionApi, ret: JSON) -> None:
    with st.expander("History (audit log)"):
        audit = call_api("load the history", lambda: api.audit(int(ret["id"])))
        if audit is None:
            return
        events = audit.get("events") or []
        st.caption(
            "hash chain intact"
            if audit.get("chain_valid")
            else ":material/warning: hash chain broken"
        )
        st.dataframe(
            [
                {
                    "seq": e.get("seq"),
                    "at": e.get("at"),
                    "actor": e.get("actor"),
                    "action": e.get("action"),
                    "to": (e.get("after") or {}).get("status")
                    if isinstance(e.get("after"), dict)
                    else e.get("after"),
                }
                for e in events
            ],
            hide_index=True,
            width="stretch",
        )


def _draw_return(api: InspectionApi, return_id: int) -> None:
    ret = call_api("load the return", lambda: api.get_return(return_id))
    if ret is None:
        return
    _draw_header(ret)
    photos_col, work_col = st.columns([3, 2], gap="large")
    with work_col:
        # The next step sits at the top of its column, where the inspector looks first.
        actions = allowed_actions(ret)
        if "add_station_photos" in actions:
            _draw_capture(ret)
        _draw_last_upload(ret)
        if "receive" in actions:
            _draw_receive(ret)
        if "inspect" in actions:
            _draw_inspection(ret)
        if "decide" in actions:
            _draw_review(ret)
        _draw_refund(api, ret)
        if "close" in actions:
            _draw_close(ret)
        st.markdown("#### Grade and decision")
        render_item_grade(ret.get("item_grade"))
        render_decision(ret.get("decision"))
    with photos_col:
        _draw_photos(api, ret)
    _draw_history(api, ret)


def main() -> None:
    """Draws the station page."""
    st.title("Inspection station")
    _draw_scan()
    _draw_messages()
    _draw_candidates()
    return_id = st.session_state.get(K_RETURN)
    if return_id is None:
        st.caption("Scan the RMA barcode on the parcel label to start.")
        return
    _draw_return(station_api(), int(return_id))


main()
