"""Shared Streamlit rendering of the returns domain: money, grades, photos, decisions, errors.

Pages call these so a grade, a refund or an API error looks the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

import streamlit as st

from station_ui.client import JSON, ApiError, InspectionApi, PhotoView

T = TypeVar("T")

GRADES: tuple[str, ...] = ("resell", "refurbish", "reject")
GRADE_COLOUR = {"resell": "green", "refurbish": "orange", "reject": "red"}
STATUS_LABEL = {
    "return_requested": "Return requested",
    "eligibility_check": "Eligibility check",
    "approved": "Approved",
    "needs_review": "Needs review",
    "rejected": "Rejected",
    "label_sent": "Label sent",
    "item_received": "Item received",
    "inspected": "Inspected",
    "refunded": "Refunded",
    "closed": "Closed",
}
REASON_LABEL = {
    "damaged_on_arrival": "Damaged on arrival",
    "defective": "Defective",
    "wrong_item": "Wrong item",
    "not_as_described": "Not as described",
    "no_longer_needed": "No longer needed",
    "wrong_size": "Wrong size",
    "other": "Other",
}


def format_money(cents: int | None, currency: str | None) -> str:
    """Integer minor units as `EUR 12.34`; never goes through a float."""
    if cents is None:
        return "–"
    sign = "-" if cents < 0 else ""
    whole, minor = divmod(abs(int(cents)), 100)
    return f"{currency or ''} {sign}{whole:,}.{minor:02d}".strip()


def format_grade(grade: str | None) -> str:
    """A grade as plain text (metrics and button labels cannot colour it)."""
    return grade or "not graded"


def grade_markdown(grade: str | None) -> str:
    """A grade as coloured bold markdown, e.g. `:green[**resell**]`."""
    if not grade:
        return "not graded"
    return f":{GRADE_COLOUR.get(grade, 'gray')}[**{grade}**]"


def format_percent(value: float | None) -> str:
    """A 0..1 rate as a whole percentage."""
    return "–" if value is None else f"{value * 100:.0f}%"


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """A chosen date range as [start of first day, start of the day after the last) in UTC."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    return since, until


def draw_messages(*, flash_key: str, error_key: str) -> None:
    """Shows (once) the success or error a page's last action left in the session state."""
    flash = st.session_state.pop(flash_key, None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    failure = st.session_state.pop(error_key, None)
    if failure:
        action, error = failure
        show_api_error(error, action=action)


def show_api_error(error: ApiError, *, action: str | None = None) -> None:
    """Shows what went wrong and what to do about it, never a traceback."""
    lead = f"Could not {action}: " if action else ""
    text = f"{lead}{error.message}"
    if error.hint:
        text += f"  \n**What to do:** {error.hint}"
    st.error(text, icon=":material/error:")


def call_api(action: str, fn: Callable[[], T]) -> T | None:
    """Runs one API call; on failure shows the error and returns None."""
    try:
        return fn()
    except ApiError as error:
        show_api_error(error, action=action)
        return None


@st.cache_data(ttl=600, show_spinner=False, max_entries=256)
def _photo_bytes(
    base_url: str, api_key: str | None, customer_token: str | None, photo_id: int, kind: PhotoView
) -> bytes:
    # Photos never change once stored, so caching by id saves a round trip on every rerun.
    # The credentials are part of the key so one caller's cached image never serves another.
    api = InspectionApi(base_url, api_key=api_key, customer_token=customer_token)
    return api.photo_bytes(photo_id, kind=kind)


def photo_image(
    api: InspectionApi, photo_id: int, *, kind: PhotoView = "annotated"
) -> bytes | None:
    """The photo's bytes (defect boxes drawn by default), or None if it cannot be fetched."""
    try:
        return _photo_bytes(api.base_url, api.api_key, api.customer_token, photo_id, kind)
    except ApiError as error:
        st.caption(f"photo {photo_id} not shown: {error.message}")
        return None


def render_quality(quality: JSON | None) -> None:
    """The quality gate's verdict with its retake advice."""
    if not quality:
        return
    if quality.get("passed", True) and not quality.get("flags"):
        st.caption(":material/check_circle: photo quality OK")
        return
    flags = ", ".join(str(f).replace("_", " ") for f in quality.get("flags") or [])
    advice = quality.get("advice")
    advice_text = " ".join(advice) if isinstance(advice, list) else advice
    st.warning(
        f"Photo quality: {flags or 'check the photo'}"
        + (f"  \n**Retake:** {advice_text}" if advice_text else ""),
        icon=":material/photo_camera:",
    )


def defect_summary(defects: Iterable[JSON]) -> str:
    """Defects in one line, e.g. `crack 82% (severe), scratch 40%`."""
    parts = []
    for defect in defects:
        text = str(defect.get("defect_type", "?")).replace("_", " ")
        if defect.get("confidence") is not None:
            text += f" {format_percent(defect['confidence'])}"
        if defect.get("severity"):
            text += f" ({defect['severity']})"
        parts.append(text)
    return ", ".join(parts)


def render_photo(api: InspectionApi, photo: JSON) -> None:
    """One graded photo: the annotated image, grade, confidence, defects and quality advice."""
    image = photo_image(api, int(photo["id"]))
    if image is not None:
        st.image(image, width="stretch")
    line = f"{grade_markdown(photo.get('grade'))}"
    if photo.get("confidence") is not None:
        line += f" · {format_percent(photo['confidence'])} sure"
    st.markdown(f"{line} · {photo.get('source', '')} photo {photo['id']}")
    defects = photo.get("defects") or []
    st.caption(f"defects: {defect_summary(defects)}" if defects else "no defects found")
    render_quality(photo.get("quality"))


def render_photo_grid(api: InspectionApi, photos: list[JSON], *, columns: int = 2) -> None:
    """Photos side by side, `columns` to a row."""
    for start in range(0, len(photos), columns):
        cols = st.columns(columns)
        for col, photo in zip(cols, photos[start : start + columns], strict=False):
            with col:
                render_photo(api, photo)


def render_item_grade(item_grade: JSON | None, *, title: str = "Item grade") -> None:
    """The item's grade over its photos, in one line that fits a narrow column."""
    if not item_grade:
        st.info("No grade yet: add photos to grade the item.")
        return
    line = f"{title}: {grade_markdown(item_grade.get('grade'))}"
    if item_grade.get("confidence") is not None:
        line += f" · {format_percent(item_grade['confidence'])} sure"
    if item_grade.get("needs_review"):
        line += " · :orange[needs a person's look]"
    st.markdown(line)
    probabilities = item_grade.get("probabilities") or {}
    if probabilities:
        st.caption(
            "probabilities: "
            + ", ".join(f"{g} {format_percent(p)}" for g, p in probabilities.items())
        )
    reasons = [str(r).replace("_", " ") for r in item_grade.get("reason_codes") or []]
    if reasons:
        st.caption("why: " + ", ".join(reasons))


def render_decision(decision: JSON | None) -> None:
    """The decision with its reasons, the refund it quotes, and the fraud evidence."""
    if not decision:
        st.info("No decision yet.")
        return
    outcome = str(decision.get("outcome", "?"))
    text = f"**Decision: {outcome.replace('_', ' ')}** (stage {decision.get('stage', '?')}, "
    text += f"by {decision.get('decided_by', '?')}, policy {decision.get('policy_version', '?')})"
    if outcome.startswith("approve"):
        st.success(text)
    elif outcome in ("reject", "ineligible", "rejected"):
        st.error(text)
    else:
        st.warning(text)
    for code, message in zip(
        decision.get("reason_codes") or [], decision.get("messages") or [], strict=False
    ):
        st.markdown(f"- `{code}`: {message}")
    if not decision.get("messages"):
        for code in decision.get("reason_codes") or []:
            st.markdown(f"- `{code}`")
    quote = decision.get("refund")
    if quote:
        st.caption(
            f"refund quote: {format_money(quote.get('amount_cents'), quote.get('currency'))}"
        )
    render_fraud(decision)


def render_fraud(decision: JSON) -> None:
    """Fraud score and each signal with its evidence."""
    signals = decision.get("fraud_signals") or []
    score = decision.get("fraud_score")
    if not signals:
        if score is not None:
            st.caption(f"fraud score {score:.2f}: no fraud signals")
        return
    with st.expander(f"Fraud evidence (score {score:.2f}, {len(signals)} signals)", expanded=True):
        for signal in signals:
            st.markdown(
                f"**{str(signal.get('reason_code', '?')).replace('_', ' ')}** "
                f"(weight {signal.get('weight', 0):.2f}): {signal.get('message', '')}"
            )
            evidence = signal.get("evidence")
            if evidence:
                st.json(evidence, expanded=False)
