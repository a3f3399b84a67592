"""The FastAPI application: start-up wiring and the versioned routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inspection.api.errors import BodySizeLimit, install_error_handlers
from inspection.api.routes import (
    audit,
    grade,
    health,
    insights,
    orders,
    photos,
    qa,
    refunds,
    returns,
    webhooks,
)
from inspection.observability import configure_logging
from inspection.runtime import limit_malloc_arenas
from inspection.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app; tests pass their own settings, the server uses the environment's."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from inspection.grading.pipeline import GradingPipeline
        from inspection.returns.webhooks import start_delivery_worker
        from inspection.store.db import init_engine

        configure_logging()
        app.state.settings = settings
        app.state.engine = init_engine(settings=settings)
        # Staff keys created with `inspection create-api-key` (stored hashed) are accepted too.
        from inspection.store.api_keys import make_api_key_lookup

        app.state.api_key_lookup = make_api_key_lookup(engine=app.state.engine)
        app.state.grading = GradingPipeline.from_settings(settings=settings)
        worker = start_delivery_worker(app=app) if settings.webhook.run_worker else None
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            app.state.grading.close()
            app.state.engine.dispose()

    app = FastAPI(
        title="Returns inspection",
        version="0.1.0",
        description=(
            "Grades photos of returned items into resell / refurbish / reject and turns the "
            "grade and order data into eligibility, fraud and refund decisions."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Over-limit bodies get a JSON 413 before any route parses (or stores) them.
    app.add_middleware(BodySizeLimit, max_bytes=settings.security.max_body_bytes)
    app.include_router(health.router)
    for module in (grade, orders, returns, photos, refunds, qa, webhooks, audit, insights):
        app.include_router(module.router, prefix="/v1")
    return app


# Before any thread exists: the server's threads then share two malloc arenas.
limit_malloc_arenas()
app = create_app()
