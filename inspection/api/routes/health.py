"""Routes for operations: liveness, readiness (database and models) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inspection.store.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers and the models are loaded (503 otherwise)."""
    state = request.app.state
    engine = getattr(state, "engine", None)
    database_ok = engine is not None and ping(engine=engine)
    grading = getattr(state, "grading", None)
    models: Any = getattr(grading, "model_versions", None) if grading is not None else None
    models_ok = bool(models)
    body = {
        "status": "ready" if database_ok and models_ok else "not_ready",
        "database": "ok" if database_ok else "unreachable",
        "models": models if models_ok else "not loaded",
    }
    return JSONResponse(status_code=200 if database_ok and models_ok else 503, content=body)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)
