"""Prometheus metrics and structured logging shared by every part of the service."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import Counter, Histogram

GRADING_LATENCY = Histogram(
    "inspection_grading_seconds",
    "Time to grade one photo (intake, quality gate, models).",
    buckets=(0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5),
)
PHOTOS_GRADED = Counter("inspection_photos_graded_total", "Photos graded.", ["source", "grade"])
PHOTOS_REJECTED = Counter("inspection_photos_rejected_total", "Uploads rejected.", ["code"])
DECISIONS = Counter("inspection_decisions_total", "Decisions made, by outcome.", ["outcome"])
REVIEWS = Counter("inspection_manual_reviews_total", "Returns routed to manual review.")
REFUNDS = Counter("inspection_refunds_total", "Refunds released, by adapter.", ["adapter"])
REFUND_CYCLE = Histogram(
    "inspection_refund_cycle_seconds",
    "Time from a return being opened to its refund being released.",
    buckets=(60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400),
)
WEBHOOK_DELIVERIES = Counter(
    "inspection_webhook_deliveries_total", "Webhook delivery attempts.", ["result"]
)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, so log shippers need no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key.startswith("ctx_"):
                entry[key[4:]] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Sends JSON logs to stderr; idempotent."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
