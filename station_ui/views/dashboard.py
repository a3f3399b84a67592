"""Dashboard page: automation and review rates, refund cycle time, grade mix, and the top
defects and return reasons per SKU (the spikes to send to merchandising or fulfilment).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import altair as alt
import streamlit as st

from station_ui.client import JSON, InspectionApi
from station_ui.display import GRADES, REASON_LABEL, call_api, format_percent, period_bounds
from station_ui.settings import load_settings

GRADE_COLOURS = {"resell": "#2e9e44", "refurbish": "#f08c00", "reject": "#d9480f"}


def dashboard_api() -> InspectionApi:
    """Any staff key may read the statistics; the station's is always configured."""
    settings = load_settings()
    return InspectionApi(
        settings.api_url, api_key=settings.station_key, timeout_seconds=settings.timeout_seconds
    )


def per_sku_rows(entries: list[JSON], kind: str) -> list[dict[str, object]]:
    """`[{sku, <kind>, n}]` rows sorted so each SKU's biggest count comes first."""
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        totals[str(entry.get("sku"))] += int(entry.get("n") or 0)
    rows = [
        {"sku": str(e.get("sku")), kind: str(e.get(kind)), "n": int(e.get("n") or 0)}
        for e in entries
    ]
    return sorted(rows, key=lambda r: (-totals[str(r["sku"])], -int(str(r["n"]))))


def _draw_headline(stats: JSON) -> None:
    cols = st.columns(4)
    cols[0].metric("Returns", stats.get("returns", 0))
    cols[1].metric("Automation rate", format_percent(stats.get("automation_rate")))
    cols[2].metric("Manual review rate", format_percent(stats.get("manual_review_rate")))
    cycle = stats.get("refund_cycle_hours_p50")
    cols[3].metric("Refund cycle (median)", "–" if cycle is None else f"{float(cycle):.1f} h")


def _draw_grade_mix(stats: JSON) -> None:
    mix = stats.get("grade_mix") or {}
    st.markdown("**Grade mix**")
    if not mix:
        st.caption("no graded items in this period")
        return
    rows = [
        {"grade": g, "items": int(mix.get(g, 0))}
        for g in (*GRADES, *sorted(set(mix) - set(GRADES)))
    ]
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            x=alt.X("grade:N", sort=list(GRADES), title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("items:Q", title="items", axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.Color(
                "grade:N",
                scale=alt.Scale(domain=list(GRADE_COLOURS), range=list(GRADE_COLOURS.values())),
                legend=None,
            ),
            tooltip=["grade:N", "items:Q"],
        )
        .properties(height=260)
    )
    st.altair_chart(chart, width="stretch")


def _draw_per_sku(stats: JSON, key: str, kind: str, title: str) -> None:
    st.markdown(f"**{title}**")
    rows = per_sku_rows(list(stats.get(key) or []), kind)
    if not rows:
        st.caption("nothing in this period")
        return
    if kind == "reason_code":
        for row in rows:
            row[kind] = REASON_LABEL.get(str(row[kind]), row[kind])
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y("sku:N", sort="-x", title="SKU"),
            x=alt.X("sum(n):Q", title="count", axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.Color(f"{kind}:N", title=kind.replace("_", " ")),
            tooltip=["sku:N", f"{kind}:N", "n:Q"],
        )
        .properties(height=max(160, 28 * len({r["sku"] for r in rows})))
    )
    st.altair_chart(chart, width="stretch")


def main() -> None:
    """Draws the dashboard page."""
    st.title("Returns dashboard")
    today = datetime.now(UTC).date()
    period = st.date_input(
        "Period",
        value=(today - timedelta(days=30), today),
        key="dashboard_period",
        max_value=today,
    )
    start, end = (period[0], period[-1]) if isinstance(period, tuple) and period else (today, today)
    since, until = period_bounds(start, end)
    api = dashboard_api()
    stats = call_api("load the statistics", lambda: api.stats(since=since, until=until))
    if stats is None:
        return
    _draw_headline(stats)
    left, right = st.columns(2)
    with left:
        _draw_grade_mix(stats)
    with right:
        _draw_per_sku(stats, "top_defects_by_sku", "defect_type", "Top defects per SKU")
    _draw_per_sku(stats, "top_reasons_by_sku", "reason_code", "Top return reasons per SKU")


main()
