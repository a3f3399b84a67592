"""QA page: photos most likely misgraded, ranked by mistakenness, to relabel with a reason;
the exception queue; an export of corrections for retraining; model-vs-human confusion.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Literal

import streamlit as st

from station_ui.client import JSON, ApiError, Grade, InspectionApi
from station_ui.display import (
    GRADES,
    call_api,
    defect_summary,
    draw_messages,
    format_grade,
    format_money,
    format_percent,
    period_bounds,
    photo_image,
)
from station_ui.settings import load_settings

K_FLASH = "qa_flash"
K_ERROR = "qa_error"
REASON_LABEL = {
    "low_confidence": "low confidence",
    "inspector_override": "inspector override",
    "customer_station_disagreement": "customer vs station disagree",
}


def qa_api() -> InspectionApi:
    """The API client with the QA key."""
    settings = load_settings()
    return InspectionApi(
        settings.api_url, api_key=settings.qa_key, timeout_seconds=settings.timeout_seconds
    )


def _on_relabel(photo_id: int) -> None:
    grade: Grade = st.session_state.get(f"relabel_grade_{photo_id}", "resell")
    reason = str(st.session_state.get(f"relabel_reason_{photo_id}", "")).strip()
    if not reason:
        st.session_state[K_ERROR] = (
            f"relabel photo {photo_id}",
            ApiError(message="a relabel needs a reason", hint="write what the model missed"),
        )
        return
    try:
        label = qa_api().qa_label(photo_id=photo_id, grade=grade, reason=reason)
    except ApiError as error:
        st.session_state[K_ERROR] = (f"relabel photo {photo_id}", error)
        return
    st.session_state[K_FLASH] = (
        f"Photo {photo_id} relabelled {label.get('grade', grade)} "
        f"(model said {label.get('model_grade', '?')})"
    )


def _draw_messages() -> None:
    draw_messages(flash_key=K_FLASH, error_key=K_ERROR)


def _draw_history(api: InspectionApi, return_id: int) -> None:
    audit = call_api("load the history", lambda: api.audit(return_id))
    if audit is None:
        return
    rows = [
        {"seq": e.get("seq"), "at": e.get("at"), "actor": e.get("actor"), "action": e.get("action")}
        for e in audit.get("events") or []
    ]
    st.dataframe(rows, hide_index=True, width="stretch")


def _draw_queue_entry(api: InspectionApi, rank: int, entry: JSON) -> None:
    photo_id = int(entry["photo_id"])
    reasons = ", ".join(REASON_LABEL.get(r, r) for r in entry.get("reasons") or [])
    title = (
        f"#{rank} · {entry.get('rma')} · photo {photo_id} ({entry.get('source')}) · "
        f"model {format_grade(entry.get('model_grade'))} · "
        f"human {format_grade(entry.get('human_grade'))} · "
        f"mistakenness {float(entry.get('mistakenness') or 0):.2f}"
    )
    with st.expander(title, expanded=rank == 1):
        left, right = st.columns([2, 3])
        with left:
            image = photo_image(api, photo_id)
            if image is not None:
                st.image(image, caption=f"photo {photo_id} with defects drawn", width="stretch")
            # Drawn on demand (a dozen grader runs), so only when asked for.
            if st.toggle("Where the grader looked", key=f"heatmap_{photo_id}"):
                heat = photo_image(api, photo_id, kind="heatmap")
                if heat is not None:
                    st.image(
                        heat,
                        caption="hot = the regions that pushed the grade towards reject",
                        width="stretch",
                    )
        with right:
            st.markdown(f"**Why it is here:** {reasons or '–'}")
            st.markdown(f"**Model confidence:** {format_percent(entry.get('confidence'))}")
            defects = entry.get("defects") or []
            st.markdown(f"**Defects:** {defect_summary(defects) if defects else 'none found'}")
            probabilities = entry.get("probabilities") or {}
            if probabilities:
                st.caption(
                    "probabilities: "
                    + ", ".join(f"{g} {format_percent(p)}" for g, p in probabilities.items())
                    + f" · model {entry.get('model_version') or '?'}"
                )
            with st.form(f"relabel_{photo_id}"):
                default = entry.get("human_grade") or entry.get("model_grade")
                st.selectbox(
                    "Correct grade",
                    GRADES,
                    index=GRADES.index(default) if default in GRADES else 0,
                    key=f"relabel_grade_{photo_id}",
                )
                st.text_input("Reason (required)", key=f"relabel_reason_{photo_id}")
                st.form_submit_button("Save label", on_click=_on_relabel, args=(photo_id,))
            if st.toggle("Show history", key=f"history_{photo_id}"):
                _draw_history(api, int(entry["return_id"]))


def _draw_queue(api: InspectionApi, limit: int) -> None:
    st.subheader("Misgrade queue")
    queue = call_api("load the QA queue", lambda: api.qa_queue(limit=limit))
    if queue is None:
        return
    entries = queue.get("data") or []
    st.caption(f"{queue.get('count', len(entries))} photos, most likely misgraded first")
    if not entries:
        st.info("Nothing to review: no low-confidence grades, overrides or disagreements.")
        return
    for rank, entry in enumerate(entries, start=1):
        _draw_queue_entry(api, rank, entry)


def _on_decide(return_id: int, rma: str, outcome: Literal["approve", "reject"]) -> None:
    reason = str(st.session_state.get(f"decide_reason_{return_id}", "")).strip()
    if not reason:
        st.session_state[K_ERROR] = (
            f"{outcome} {rma}",
            ApiError(message="a decision needs a reason", hint="write why in the reason field"),
        )
        return
    try:
        ret = qa_api().decide_return(return_id, outcome=outcome, reason=reason)
    except ApiError as error:
        st.session_state[K_ERROR] = (f"{outcome} {rma}", error)
        return
    st.session_state[K_FLASH] = f"{rma} {outcome}d: now {ret.get('status', '?')}"


def _draw_review_entry(review: JSON) -> None:
    return_id = int(review["return_id"])
    rma = str(review.get("rma") or return_id)
    value = format_money(review.get("value_cents"), review.get("currency"))
    title = (
        f"{rma} · {value} · fraud score {float(review.get('fraud_score') or 0):.2f} · "
        f"grade {format_grade(review.get('grade'))}"
    )
    with st.expander(title):
        codes = ", ".join(str(c).replace("_", " ") for c in review.get("reason_codes") or [])
        st.markdown(f"**Why it waits:** {codes or '–'}")
        for signal in review.get("fraud_signals") or []:
            st.markdown(
                f"- **{str(signal.get('reason_code', '?')).replace('_', ' ')}** "
                f"({float(signal.get('weight') or 0):.2f}): {signal.get('message', '')}"
            )
        st.text_input("Reason for the decision (required)", key=f"decide_reason_{return_id}")
        cols = st.columns(2)
        cols[0].button(
            "Approve",
            key=f"approve_{return_id}",
            on_click=_on_decide,
            args=(return_id, rma, "approve"),
        )
        cols[1].button(
            "Reject",
            key=f"reject_{return_id}",
            on_click=_on_decide,
            args=(return_id, rma, "reject"),
        )


def _draw_reviews(api: InspectionApi) -> None:
    st.subheader("Returns waiting for a decision")
    reviews = call_api("load the review queue", api.reviews)
    if reviews is None:
        return
    rows = reviews.get("data", []) if isinstance(reviews, dict) else reviews
    if not rows:
        st.caption("no returns need review")
        return
    st.caption(f"{len(rows)} returns, most money at risk first")
    for review in rows:
        _draw_review_entry(review)


def _draw_export(api: InspectionApi, since: datetime) -> None:
    st.subheader("Corrections for retraining")
    export = call_api("export the corrections", lambda: api.qa_export(since=since))
    if export is None:
        return
    rows = export.get("data", export) if isinstance(export, dict) else export
    count = len(rows) if isinstance(rows, list) else 0
    st.download_button(
        f"Download {count} corrections (JSON)",
        data=json.dumps(export, indent=2, default=str),
        file_name=f"qa-corrections-since-{since.date().isoformat()}.json",
        mime="application/json",
        key="export_corrections",
    )


def _draw_confusion(api: InspectionApi, since: datetime, until: datetime) -> None:
    st.subheader("Model vs human grades")
    confusion = call_api(
        "load the confusion matrix", lambda: api.qa_confusion(since=since, until=until)
    )
    if confusion is None:
        return
    labels = list(confusion.get("labels") or GRADES)
    matrix = confusion.get("matrix") or []
    st.caption(
        f"{confusion.get('count', 0)} human-graded photos; rows: human grade, columns: model grade"
    )
    table = {
        f"model: {model}": {
            f"human: {human}": (matrix[h][m] if h < len(matrix) and m < len(matrix[h]) else 0)
            for h, human in enumerate(labels)
        }
        for m, model in enumerate(labels)
    }
    st.dataframe(table, width="stretch")
    total = sum(sum(row) for row in matrix) if matrix else 0
    agree = sum(matrix[i][i] for i in range(min(len(matrix), len(labels)))) if matrix else 0
    if total:
        st.metric("Model agrees with humans", format_percent(agree / total))


def main() -> None:
    """Draws the QA page."""
    settings = load_settings()
    api = qa_api()
    st.title("QA review")
    _draw_messages()
    today = datetime.now(UTC).date()
    period = st.date_input(
        "Period", value=(today - timedelta(days=30), today), key="qa_period", max_value=today
    )
    start, end = (period[0], period[-1]) if isinstance(period, tuple) and period else (today, today)
    since, until = period_bounds(start, end)
    queue_tab, reviews_tab, confusion_tab = st.tabs(
        ["Misgrade queue", "Exception queue", "Confusion and export"]
    )
    with queue_tab:
        _draw_queue(api, settings.queue_limit)
    with reviews_tab:
        _draw_reviews(api)
    with confusion_tab:
        _draw_confusion(api, since, until)
        _draw_export(api, since)


main()
