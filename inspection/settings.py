"""Service settings: one pydantic-settings class per concern, all read from `INSPECTION_*` env vars.

Settings are validated when the service starts, so a bad value stops it with a clear message
instead of failing on the first request.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Demo keys let `make run` work with no set-up; `INSPECTION_SECURITY_ENVIRONMENT=production`
# refuses to start while any of them is still in use.
DEMO_API_KEYS = {
    "station": "demo-station-key",
    "qa": "demo-qa-key",
    "admin": "demo-admin-key",
    "integration": "demo-integration-key",
}
DEMO_TOKEN_SECRET = "demo-token-secret-change-me"  # refused in production
MEGABYTE = 1024 * 1024


def _env(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    """Where state lives: a SQLite file by default, PostgreSQL for real deployments."""

    model_config = _env("INSPECTION_DATABASE_")
    url: str = "sqlite:///var/inspection.db"
    echo: bool = False


class StorageSettings(BaseSettings):
    """Content-addressed blob store for photo originals and annotated images."""

    model_config = _env("INSPECTION_STORAGE_")
    blob_dir: Path = Path("var/blobs")
    # Customer photos older than this are purged by `inspection purge-photos`; audit keeps the fact.
    photo_retention_days: int = Field(default=365, ge=1)


class ModelSettings(BaseSettings):
    """Which ONNX models to load and how to run them."""

    model_config = _env("INSPECTION_MODEL_")
    dir: Path = Path("models")
    grader: str = "grader"
    detector: str = "detector"
    enable_detector: bool = True
    # "auto" picks TensorRT > CUDA > CPU from what onnxruntime offers; or a comma list.
    providers: str = "auto"
    intra_op_threads: int = Field(default=2, ge=1, le=256)
    inter_op_threads: int = Field(default=1, ge=1, le=64)
    # ONNX Runtime's idle intra-op threads spin for work by default; on shared or busy cores
    # that burns the CPU other requests need (measured: 2-thread detector 44 -> 28 ms under load).
    allow_spinning: bool = False
    # Request micro-batching for the grader: 1 disables it (the default: on 2 cores batching
    # measured slower than per-request runs, see benchmarks/results/service.md).
    max_batch: int = Field(default=1, ge=1, le=64)
    batch_wait_ms: float = Field(default=2.0, ge=0, le=100)
    # Gradings (quality gate + grader + detector) run at once; further requests wait for a
    # turn. Each run in flight holds ONNX Runtime buffers, while throughput stops rising at
    # about one run per core (in-process, 2 cores: 26.9 photos/s at 2 threads, 27.2 at 16).
    # Measured on the server at 16 uploads in flight: peak RSS 597 -> 523 MB, same photos/s.
    concurrent_photos: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=1, le=256)


class IntakeSettings(BaseSettings):
    """Limits on uploaded photos: size, pixels (decompression bombs), count per request."""

    model_config = _env("INSPECTION_INTAKE_")
    max_bytes: int = Field(default=15 * MEGABYTE, ge=1024)
    max_pixels: int = Field(default=60_000_000, ge=10_000)
    max_photos_per_request: int = Field(default=10, ge=1, le=50)
    # Per return and source (customer / station): enough for every angle of a multi-item return,
    # and a bound on what one customer token can put in the blob store.
    max_photos_per_return: int = Field(default=40, ge=1, le=1000)
    # Longest side kept in memory for analysis; originals are stored untouched.
    analysis_max_side: int = Field(default=1024, ge=224)


class QualitySettings(BaseSettings):
    """Thresholds of the photo quality gate; a failed gate flags and advises, never crashes."""

    model_config = _env("INSPECTION_QUALITY_")
    min_side_px: int = Field(default=320, ge=16)
    blur_threshold: float = Field(default=60.0, ge=0)  # variance of Laplacian at 512 px
    dark_threshold: float = Field(default=45.0, ge=0, le=255)  # mean luminance
    bright_threshold: float = Field(default=225.0, ge=0, le=255)
    clipped_fraction: float = Field(default=0.35, gt=0, le=1)
    min_product_fraction: float = Field(default=0.03, ge=0, le=1)


class SecuritySettings(BaseSettings):
    """API keys per role and the secret that signs customer tokens."""

    model_config = _env("INSPECTION_SECURITY_")
    environment: Literal["development", "production"] = "development"
    station_key: str = DEMO_API_KEYS["station"]
    qa_key: str = DEMO_API_KEYS["qa"]
    admin_key: str = DEMO_API_KEYS["admin"]
    integration_key: str = DEMO_API_KEYS["integration"]
    token_secret: str = DEMO_TOKEN_SECRET
    max_body_bytes: int = Field(default=160 * MEGABYTE, ge=1024)

    @model_validator(mode="after")
    def _no_demo_secrets_in_production(self) -> SecuritySettings:
        if self.environment == "production":
            in_use = [
                role for role, key in DEMO_API_KEYS.items() if getattr(self, f"{role}_key") == key
            ]
            if in_use or self.token_secret == DEMO_TOKEN_SECRET:
                raise ValueError(
                    "production refuses demo secrets: set INSPECTION_SECURITY_<ROLE>_KEY for "
                    f"{', '.join(in_use) or 'none'} and INSPECTION_SECURITY_TOKEN_SECRET"
                )
            short = [r for r in DEMO_API_KEYS if len(getattr(self, f"{r}_key")) < 24]
            if short:
                raise ValueError(f"API keys must be at least 24 characters: {', '.join(short)}")
        return self


class PolicySettings(BaseSettings):
    """The returns policy file (eligibility windows, refund amounts, review thresholds)."""

    model_config = _env("INSPECTION_POLICY_")
    path: Path = Path("datasets/policy/returns-policy.yaml")


class RefundSettings(BaseSettings):
    """How refunds are paid: recorded in our ledger, or POSTed to the merchant's payment service."""

    model_config = _env("INSPECTION_REFUND_")
    adapter: Literal["ledger", "webhook"] = "ledger"
    webhook_url: str | None = None
    webhook_secret: str = "demo-refund-secret"
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> RefundSettings:
        if self.adapter == "webhook" and not self.webhook_url:
            raise ValueError(
                "INSPECTION_REFUND_ADAPTER=webhook needs INSPECTION_REFUND_WEBHOOK_URL"
            )
        return self


class WebhookSettings(BaseSettings):
    """Outbox delivery: signed POSTs with exponential backoff, then dead-letter."""

    model_config = _env("INSPECTION_WEBHOOK_")
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_base_seconds: float = Field(default=2.0, ge=0)
    backoff_max_seconds: float = Field(default=3600.0, ge=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    worker_interval_seconds: float = Field(default=1.0, gt=0)
    run_worker: bool = True


class Settings:
    """All settings of the service, grouped by concern."""

    def __init__(self) -> None:
        self.database = DatabaseSettings()
        self.storage = StorageSettings()
        self.model = ModelSettings()
        self.intake = IntakeSettings()
        self.quality = QualitySettings()
        self.security = SecuritySettings()
        self.policy = PolicySettings()
        self.refund = RefundSettings()
        self.webhook = WebhookSettings()


@lru_cache
def get_settings() -> Settings:
    """Reads and validates settings once per process."""
    return Settings()
