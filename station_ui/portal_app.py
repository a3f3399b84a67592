"""Customer portal (`streamlit run station_ui/portal_app.py`): find the order, open a return,
upload photos with instant quality feedback, submit, and follow the status and the label.

After the return is open every call uses the customer's token, which reaches that return only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from station_ui.client import JSON, ApiError, InspectionApi, PhotoFile
from station_ui.display import (
    REASON_LABEL,
    STATUS_LABEL,
    format_grade,
    format_money,
    photo_image,
    render_quality,
    show_api_error,
)
from station_ui.settings import load_settings

K_ORDER = "portal_order"
K_EMAIL = "portal_email"
K_TOKEN = "portal_token"
K_RETURN = "portal_return"
K_UPLOAD = "portal_last_upload"
K_ERROR = "portal_error"
K_FLASH = "portal_flash"
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif"]
# What a customer sees of the decision: the outcome in words, never the fraud evidence.
OUTCOME_TEXT = {
    "approve": "Your return is approved.",
    "approve_refund": "Your return is approved and your refund is on its way.",
    "needs_review": "A member of our team will look at your return shortly.",
    "ineligible": "We cannot accept this return.",
    "reject": "We cannot accept this return.",
}
NOT_FOUND = ApiError(
    message="we could not find an order with that number and e-mail address",
    hint="check both against your order confirmation e-mail",
    code="not_found",
)


def lookup_api() -> InspectionApi:
    """Server-side only: finds the order before the customer has a token."""
    settings = load_settings()
    return InspectionApi(
        settings.api_url,
        api_key=settings.portal_lookup_key,
        timeout_seconds=settings.timeout_seconds,
    )


def customer_api() -> InspectionApi:
    """The API as this customer: anonymous before the return is open, then with its token."""
    settings = load_settings()
    return InspectionApi(
        settings.api_url,
        customer_token=st.session_state.get(K_TOKEN),
        timeout_seconds=settings.timeout_seconds,
        upload_timeout_seconds=settings.upload_timeout_seconds,
    )


def customer_order_view(order: JSON) -> JSON:
    """The part of an order a customer may see once the e-mail matched: no internal ids."""
    return {
        "order_number": order.get("order_number"),
        "currency": order.get("currency"),
        "lines": [
            {
                key: line.get(key)
                for key in ("id", "sku", "name", "category", "price_cents", "quantity")
            }
            | {"final_sale": bool(line.get("final_sale"))}
            for line in order.get("lines") or []
        ],
    }


# -- callbacks --------------------------------------------------------------------------------


def _fail(action: str, error: ApiError) -> None:
    st.session_state[K_ERROR] = (action, error)


def _on_find_order() -> None:
    number = str(st.session_state.get("order_number_input", "")).strip()
    email = str(st.session_state.get("email_input", "")).strip()
    if not number or not email:
        _fail(
            "find the order",
            ApiError(message="enter the order number and e-mail", hint="both are on your receipt"),
        )
        return
    try:
        order = lookup_api().get_order(number)
    except ApiError as error:
        _fail("find the order", NOT_FOUND if error.status == 404 else error)
        return
    owner = str((order.get("customer") or {}).get("email", ""))
    if owner.casefold() != email.casefold():
        _fail("find the order", NOT_FOUND)  # same words as a wrong number: reveal nothing
        return
    st.session_state[K_ORDER] = customer_order_view(order)
    st.session_state[K_EMAIL] = email


def _on_open_return() -> None:
    order: JSON = st.session_state[K_ORDER]
    items: list[JSON] = []
    for line in order["lines"]:
        if not st.session_state.get(f"return_line_{line['id']}"):
            continue
        reason = st.session_state.get(f"reason_line_{line['id']}")
        if not reason:
            _fail(
                "open the return",
                ApiError(
                    message=f"no reason chosen for {line.get('name')}",
                    hint="choose why you are returning each ticked item",
                ),
            )
            return
        item: JSON = {
            "order_line_id": line["id"],
            "quantity": int(st.session_state.get(f"qty_line_{line['id']}") or 1),
            "reason_code": reason,
        }
        text = str(st.session_state.get(f"reason_text_line_{line['id']}", "")).strip()
        if text:
            item["reason_text"] = text
        items.append(item)
    if not items:
        _fail(
            "open the return",
            ApiError(message="no item chosen", hint="tick the items you want to send back"),
        )
        return
    try:
        opened = customer_api().open_return(
            order_number=str(order["order_number"]), email=st.session_state[K_EMAIL], items=items
        )
    except ApiError as error:
        _fail("open the return", error)
        return
    st.session_state[K_TOKEN] = opened["customer_token"]
    st.session_state[K_RETURN] = opened["return"]
    st.session_state[K_FLASH] = f"Return {opened['return'].get('rma')} opened"


def _on_upload() -> None:
    photos: list[PhotoFile] = [
        (f.name, f.getvalue(), f.type or "image/jpeg")
        for f in st.session_state.get("portal_files") or []
    ]
    camera = st.session_state.get("portal_camera")
    if camera is not None:
        photos.append((camera.name or "camera.jpg", camera.getvalue(), camera.type or "image/jpeg"))
    if not photos:
        _fail("upload photos", ApiError(message="no photo chosen", hint="choose or take a photo"))
        return
    api = customer_api()
    return_id = int(st.session_state[K_RETURN]["id"])
    try:
        result = api.upload_photos(return_id, photos=photos, source="customer")
        st.session_state[K_RETURN] = api.get_return(return_id)
    except ApiError as error:
        _fail("upload the photos", error)
        return
    st.session_state[K_UPLOAD] = result


def _on_submit() -> None:
    api = customer_api()
    try:
        st.session_state[K_RETURN] = api.submit_return(int(st.session_state[K_RETURN]["id"]))
    except ApiError as error:
        _fail("submit the return", error)
        return
    st.session_state.pop(K_UPLOAD, None)


def _on_refresh() -> None:
    try:
        st.session_state[K_RETURN] = customer_api().get_return(
            int(st.session_state[K_RETURN]["id"])
        )
    except ApiError as error:
        _fail("refresh the status", error)


def _on_start_over() -> None:
    for key in (K_ORDER, K_EMAIL, K_TOKEN, K_RETURN, K_UPLOAD, K_ERROR, K_FLASH):
        st.session_state.pop(key, None)


# -- drawing ----------------------------------------------------------------------------------


def _draw_messages() -> None:
    flash = st.session_state.pop(K_FLASH, None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    failure = st.session_state.pop(K_ERROR, None)
    if failure:
        action, error = failure
        show_api_error(error, action=action)


def _draw_find_order() -> None:
    st.markdown("Start a return: enter your order number and the e-mail address you ordered with.")
    with st.form("find_order"):
        st.text_input("Order number", key="order_number_input")
        st.text_input("E-mail", key="email_input")
        st.form_submit_button("Find my order", type="primary", on_click=_on_find_order)


def _draw_choose_items(order: JSON) -> None:
    st.subheader(f"Order {order['order_number']}")
    st.markdown("Tick the items to return and tell us why.")
    reasons = list(REASON_LABEL)
    with st.form("choose_items"):
        for line in order["lines"]:
            price = format_money(line.get("price_cents"), order.get("currency"))
            with st.container(border=True):
                label = f"{line.get('name')} ({line.get('sku')}) · {price}"
                if line.get("final_sale"):
                    label += " · final sale"
                st.checkbox(label, key=f"return_line_{line['id']}")
                cols = st.columns([2, 1])
                cols[0].selectbox(
                    "Reason",
                    reasons,
                    index=None,
                    placeholder="Choose a reason",
                    format_func=lambda code: REASON_LABEL[code],
                    key=f"reason_line_{line['id']}",
                )
                cols[1].number_input(
                    "Quantity",
                    min_value=1,
                    max_value=max(1, int(line.get("quantity") or 1)),
                    value=1,
                    key=f"qty_line_{line['id']}",
                )
                st.text_input("Anything to add? (optional)", key=f"reason_text_line_{line['id']}")
        st.form_submit_button("Open return", type="primary", on_click=_on_open_return)


def _draw_photo_feedback(api: InspectionApi, result: JSON) -> None:
    st.markdown("**Your photos**")
    photos = result.get("photos") or []
    cols = st.columns(max(1, min(3, len(photos))))
    for index, photo in enumerate(photos):
        with cols[index % len(cols)]:
            image = photo_image(api, int(photo["id"]))
            if image is not None:
                st.image(image, width="stretch")
            st.caption(f"we see: {format_grade(photo.get('grade'))}")
            quality = photo.get("quality") or {}
            if quality.get("passed", True) and not quality.get("flags"):
                st.success("Good photo, thank you.", icon=":material/check_circle:")
            else:
                render_quality(quality)


def _draw_upload(api: InspectionApi, ret: JSON) -> None:
    photos = ret.get("photos") or []
    st.markdown(
        f"**Add photos of the item** ({len(photos)} sent). Show the whole item in good light, "
        "and any damage close up."
    )
    with st.form("portal_photos", clear_on_submit=True):
        if st.toggle("Use my camera", key="portal_use_camera"):
            st.camera_input("Camera", key="portal_camera")
        st.file_uploader("Photos", type=PHOTO_TYPES, accept_multiple_files=True, key="portal_files")
        st.form_submit_button("Upload photos", on_click=_on_upload)
    result = st.session_state.get(K_UPLOAD)
    if result:
        _draw_photo_feedback(api, result)
    st.button(
        "Submit return",
        type="primary",
        key="submit_return",
        on_click=_on_submit,
        disabled=not photos,
        help=None if photos else "add at least one photo first",
    )


def _draw_label(label: JSON | None, return_id: int) -> None:
    if not label:
        return
    with st.container(border=True):
        st.markdown("**Your return label**")
        st.markdown(
            f"Carrier: **{label.get('carrier')}** · tracking number: "
            f"**{label.get('tracking_number')}**"
        )
        try:
            png = customer_api().return_label(return_id)
        except ApiError as exc:
            st.warning(f"The label cannot be shown right now: {exc}")
            return
        st.image(png, caption="Print this label and stick it on the parcel", width=300)
        st.download_button(
            "Download the label",
            png,
            file_name=f"{label.get('tracking_number')}.png",
            mime="image/png",
        )


def _draw_status(ret: JSON) -> None:
    status = str(ret.get("status"))
    st.subheader(f"Return {ret.get('rma')}")
    st.markdown(f"Status: **{STATUS_LABEL.get(status, status)}**")
    decision: dict[str, Any] = ret.get("decision") or {}
    outcome = str(decision.get("outcome") or "")
    if outcome:
        text = OUTCOME_TEXT.get(outcome, outcome.replace("_", " "))
        if outcome.startswith("approve"):
            st.success(text)
        elif outcome == "needs_review":
            st.info(text)
        else:
            st.error(text)
        # Review reasons are internal (model confidence, fraud checks); a refusal is explained.
        if outcome in ("ineligible", "reject"):
            for message in decision.get("messages") or []:
                st.markdown(f"- {message}")
    refund = ret.get("refund")
    if refund:
        st.success(
            f"Refund {refund.get('status')}: "
            f"{format_money(refund.get('amount_cents'), refund.get('currency'))}"
        )
    _draw_label(ret.get("label"), int(ret["id"]))
    st.dataframe(
        [
            {
                "item": item.get("name"),
                "reason": REASON_LABEL.get(item.get("reason_code", ""), "?"),
                "quantity": item.get("quantity"),
            }
            for item in ret.get("items") or []
        ],
        hide_index=True,
        width="stretch",
    )


def main() -> None:
    """Draws the portal."""
    st.set_page_config(
        page_title="Return an item", page_icon=":material/assignment_return:", layout="centered"
    )
    # Customers get no developer menu and never a traceback, whatever fails.
    st.set_option("client.toolbarMode", "minimal")
    st.set_option("client.showErrorDetails", "none")
    st.title("Return an item")
    _draw_messages()
    ret: JSON | None = st.session_state.get(K_RETURN)
    order: JSON | None = st.session_state.get(K_ORDER)
    if ret is not None:
        _draw_status(ret)
        if ret.get("status") == "return_requested":
            _draw_upload(customer_api(), ret)
        else:
            st.button("Refresh status", key="refresh_status", on_click=_on_refresh)
    elif order is not None:
        _draw_choose_items(order)
    else:
        _draw_find_order()
    if order is not None or ret is not None:
        st.button("Start over", key="start_over", on_click=_on_start_over)


main()
