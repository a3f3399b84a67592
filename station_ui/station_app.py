"""Staff app (`streamlit run station_ui/station_app.py`): station, QA review and dashboard pages.

It talks to the inspection API over HTTP only; see station_ui/settings.py for the variables.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(
    page_title="Returns inspection", page_icon=":material/inventory_2:", layout="wide"
)
# Inspectors need no "Deploy" menu, and an unexpected failure must never show them a traceback.
st.set_option("client.toolbarMode", "minimal")
st.set_option("client.showErrorDetails", "none")

page = st.navigation(
    [
        st.Page(
            VIEWS / "station.py", title="Station", icon=":material/barcode_scanner:", default=True
        ),
        st.Page(VIEWS / "qa.py", title="QA review", icon=":material/fact_check:"),
        st.Page(VIEWS / "dashboard.py", title="Dashboard", icon=":material/monitoring:"),
    ]
)
page.run()
