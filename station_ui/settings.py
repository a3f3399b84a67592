"""Settings of the Streamlit apps: where the API is, which keys to use, how long to wait.

Read from `INSPECTION_UI_*` environment variables (or `.env`), e.g. `INSPECTION_UI_API_URL`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    """How the station, QA, dashboard and portal apps reach the HTTP API."""

    model_config = SettingsConfigDict(env_prefix="INSPECTION_UI_", env_file=".env", extra="ignore")

    api_url: str = "http://127.0.0.1:8000"
    # Demo keys from docs/api.md; a real station sets its own through the environment.
    station_key: str = "demo-station-key"
    qa_key: str = "demo-qa-key"
    # The portal looks an order up (number + e-mail) before the customer has a return token;
    # the API has no customer-scoped order lookup, so the portal's server side uses this key and
    # never sends it, or any order data the e-mail does not match, to the browser.
    portal_lookup_key: str = "demo-integration-key"
    timeout_seconds: float = Field(default=15.0, gt=0)
    # Grading several photos runs the models once per photo: allow longer than plain reads.
    upload_timeout_seconds: float = Field(default=120.0, gt=0)
    queue_limit: int = Field(default=50, ge=1, le=500)


def load_settings() -> UiSettings:
    """Reads the settings afresh, so a changed environment applies on the next page run."""
    return UiSettings()
