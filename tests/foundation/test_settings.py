"""Settings fail fast: bad values and demo secrets in production stop the service at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspection.settings import IntakeSettings, RefundSettings, SecuritySettings


def test_defaults_work_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECTION_SECURITY_ENVIRONMENT", raising=False)
    sec = SecuritySettings()
    assert sec.environment == "development"
    assert sec.station_key == "demo-station-key"


def test_production_refuses_demo_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_SECURITY_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="production refuses demo secrets"):
        SecuritySettings()


def test_production_accepts_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_SECURITY_ENVIRONMENT", "production")
    for role in ("STATION", "QA", "ADMIN", "INTEGRATION"):
        monkeypatch.setenv(f"INSPECTION_SECURITY_{role}_KEY", f"{role.lower()}-k3y-" + "x" * 24)
    monkeypatch.setenv("INSPECTION_SECURITY_TOKEN_SECRET", "s" * 40)
    assert SecuritySettings().environment == "production"


def test_production_refuses_short_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_SECURITY_ENVIRONMENT", "production")
    for role in ("STATION", "QA", "ADMIN", "INTEGRATION"):
        monkeypatch.setenv(f"INSPECTION_SECURITY_{role}_KEY", f"{role.lower()}-short")
    monkeypatch.setenv("INSPECTION_SECURITY_TOKEN_SECRET", "s" * 40)
    with pytest.raises(ValidationError, match="at least 24 characters"):
        SecuritySettings()


def test_bad_limit_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_INTAKE_MAX_BYTES", "-5")
    with pytest.raises(ValidationError):
        IntakeSettings()


def test_webhook_refund_adapter_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_REFUND_ADAPTER", "webhook")
    monkeypatch.delenv("INSPECTION_REFUND_WEBHOOK_URL", raising=False)
    with pytest.raises(ValidationError, match="needs INSPECTION_REFUND_WEBHOOK_URL"):
        RefundSettings()
