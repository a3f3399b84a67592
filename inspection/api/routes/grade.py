"""Stateless grading (`POST /v1/grade`) and model reload (`POST /v1/admin/reload-models`)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from inspection.api.deps import AdminDep, StaffDep
from inspection.api.uploads import grading_pipeline, read_uploads
from inspection.errors import InvalidInput
from inspection.grading.types import ItemGrade

router = APIRouter(tags=["grade"])


class GradeResponse(BaseModel):
    """The item grade from all photos, with where the time went."""

    item: ItemGrade
    timing_ms: dict[str, float] = Field(description="intake, grade and total, in milliseconds")


class ModelsReloaded(BaseModel):
    """Which models serve requests after a reload."""

    ready: bool
    model_versions: dict[str, str]
    providers: dict[str, str]


@router.post(
    "/grade",
    response_model=GradeResponse,
    summary="Grade photos of one item (stateless)",
    responses={413: {"description": "a photo is too large"}, 415: {"description": "not an image"}},
)
async def grade(
    request: Request,
    _: StaffDep,
    files: Annotated[list[UploadFile] | None, File(description="1..10 photos of one item")] = None,
    category: Annotated[str | None, Form(max_length=64)] = None,
) -> GradeResponse:
    """Grades 1..N photos of one item into resell / refurbish / reject, nothing stored."""
    pipeline = grading_pipeline(request)
    # The limits the pipeline was built with: the app's settings, not a fresh read of the env.
    intake = pipeline.settings.intake
    limit = intake.max_photos_per_request
    if not files:
        raise InvalidInput(
            "no photos were sent",
            hint=f"send 1 to {limit} photos as multipart form field 'files'",
        )
    if len(files) > limit:
        raise InvalidInput(
            f"{len(files)} photos were sent; at most {limit} are graded per request",
            hint=f"send at most {limit} photos of one item",
            details={"max_photos": limit},
        )
    started = time.perf_counter()
    uploads = await run_in_threadpool(read_uploads, files, max_bytes=intake.max_bytes)
    # Decoding and inference are CPU-bound: off the event loop.
    photos = await run_in_threadpool(lambda: pipeline.intake_many(uploads=uploads))
    decoded = time.perf_counter()
    item = await run_in_threadpool(
        lambda: pipeline.grade_photos(photos=photos, category=category, source="grade")
    )
    done = time.perf_counter()
    return GradeResponse(
        item=item,
        timing_ms={
            "intake": round((decoded - started) * 1000, 2),
            "grade": round((done - decoded) * 1000, 2),
            "total": round((done - started) * 1000, 2),
        },
    )


@router.post("/admin/reload-models", response_model=ModelsReloaded, summary="Reload models")
def reload_models(request: Request, _: AdminDep) -> ModelsReloaded:
    """Loads the models from disk again (after a promotion); the old ones serve on failure."""
    pipeline = grading_pipeline(request)
    pipeline.reload()
    return ModelsReloaded(
        ready=pipeline.ready, model_versions=pipeline.model_versions, providers=pipeline.providers
    )
