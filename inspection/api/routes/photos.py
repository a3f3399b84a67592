"""Routes for photos: upload to a return, fetch the original or annotated image, and erase a
customer's photos on a privacy request.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Request, Response, UploadFile, status

from inspection.api.deps import AdminDep, PrincipalDep, SessionDep, StaffDep
from inspection.api.uploads import grading_pipeline, read_uploads
from inspection.returns import photos as photo_service
from inspection.returns import public
from inspection.returns.deps import AppSettingsDep, BlobsDep, ReturnDep, ensure_can_see
from inspection.returns.photos import RenderKind
from inspection.returns.schemas import MAX_ID, PhotosAdded, PhotosDeleted
from inspection.returns.service import get_return
from inspection.store.models import Photo

router = APIRouter(tags=["photos"])
PRIVATE_CACHE = {"Cache-Control": "private, max-age=3600"}


@router.post(
    "/returns/{return_id}/photos", status_code=status.HTTP_201_CREATED, response_model=PhotosAdded
)
def add_photos(
    request: Request,
    ret: ReturnDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: AppSettingsDep,
    blobs: BlobsDep,
    files: Annotated[list[UploadFile], File(description="1..10 photos")],
    source: Annotated[Literal["customer", "station"], Form()],
    return_item_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
) -> PhotosAdded:
    """Checks, grades and stores photos of a return (nothing is stored if any file is bad)."""
    pipeline = grading_pipeline(request)
    limit = settings.intake.max_photos_per_request
    # One past the limit is enough for the service to refuse the count without reading them all.
    uploads = read_uploads(files[: limit + 1], max_bytes=settings.intake.max_bytes)
    result = photo_service.add_photos(
        session=session,
        ret=ret,
        uploads=uploads,
        source=source,
        role=principal.role,
        actor=principal.actor,
        return_item_id=return_item_id,
        pipeline=pipeline,
        blobs=blobs,
        max_photos=limit,
        max_per_return=settings.intake.max_photos_per_return,
    )
    # Built from the rows just written: reading them back was one more transaction per upload.
    photos = [
        public.photo_public(photo=photo, grade=grade)
        for photo, grade in zip(result.photos, result.grades, strict=True)
    ]
    return PhotosAdded(photos=photos, item_grade=public.item_grade_public(result.item, photos))


def _visible_photo(*, photo_id: int, session: SessionDep, principal: PrincipalDep) -> Photo:
    photo = photo_service.get_photo(session=session, photo_id=photo_id)
    ensure_can_see(principal=principal, ret=get_return(session=session, return_id=photo.return_id))
    return photo


def _png(
    request: Request, *, photo: Photo, session: SessionDep, blobs: BlobsDep, kind: RenderKind
) -> Response:
    data = photo_service.rendered_image(
        session=session, photo=photo, blobs=blobs, pipeline=grading_pipeline(request), kind=kind
    )
    return Response(content=data, media_type="image/png", headers=PRIVATE_CACHE)


@router.get("/photos/{photo_id}/image", response_class=Response)
def photo_image(
    photo_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
) -> Response:
    """The original photo as uploaded."""
    photo = _visible_photo(photo_id=photo_id, session=session, principal=principal)
    data = photo_service.photo_bytes(photo=photo, blobs=blobs)
    return Response(content=data, media_type=photo.content_type, headers=PRIVATE_CACHE)


@router.get("/photos/{photo_id}/annotated", response_class=Response)
def photo_annotated(
    request: Request,
    photo_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
) -> Response:
    """The photo with defect boxes, labels and the grade banner drawn on it (PNG)."""
    photo = _visible_photo(photo_id=photo_id, session=session, principal=principal)
    return _png(request, photo=photo, session=session, blobs=blobs, kind="annotated")


@router.get("/photos/{photo_id}/heatmap", response_class=Response)
def photo_heatmap(
    request: Request,
    photo_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    principal: StaffDep,
    blobs: BlobsDep,
) -> Response:
    """Where the grader saw damage (occlusion heatmap over the photo, PNG); staff only."""
    photo = _visible_photo(photo_id=photo_id, session=session, principal=principal)
    return _png(request, photo=photo, session=session, blobs=blobs, kind="heatmap")


@router.delete("/customers/{customer_id}/photos", response_model=PhotosDeleted)
def delete_customer_photos(
    customer_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    principal: AdminDep,
    blobs: BlobsDep,
) -> PhotosDeleted:
    """Erases a customer's photos on request; the audit log keeps that it happened."""
    deleted = photo_service.delete_customer_photos(
        session=session,
        customer_id=customer_id,
        blobs=blobs,
        actor=principal.actor,
        reason="customer privacy request",
    )
    return PhotosDeleted(deleted=deleted)
