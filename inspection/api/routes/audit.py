"""Routes for a return's audit trail and its evidence pack (staff only)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from inspection.api.deps import SessionDep, StaffDep
from inspection.returns.audit import verify_chain
from inspection.returns.deps import BlobsDep, ReturnDep
from inspection.returns.evidence import write_evidence

router = APIRouter(tags=["audit"])
# An evidence zip this small stays in memory; a bigger one goes to a temporary file on disk.
EVIDENCE_SPOOL_BYTES = 8 * 1024 * 1024
EVIDENCE_CHUNK_BYTES = 1024 * 1024


class AuditEventPublic(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    model_version: str | None
    confidence: float | None
    hash: str
    prev_hash: str


class AuditTrail(BaseModel):
    return_id: int
    events: list[AuditEventPublic]
    chain_valid: bool
    broken_at_seq: int | None
    problem: str | None = None


@router.get("/returns/{return_id}/audit", response_model=AuditTrail)
def get_audit(ret: ReturnDep, session: SessionDep, _: StaffDep) -> AuditTrail:
    """The return's audit events in order, with the hash chain recomputed and checked."""
    result = verify_chain(session=session, return_id=ret.id)
    return AuditTrail(
        return_id=ret.id or 0,
        events=[AuditEventPublic.model_validate(e, from_attributes=True) for e in result.events],
        chain_valid=result.valid,
        broken_at_seq=result.broken_at_seq,
        problem=result.problem,
    )


@router.get(
    "/returns/{return_id}/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the evidence pack"}},
)
def get_evidence(
    request: Request, ret: ReturnDep, session: SessionDep, blobs: BlobsDep, principal: StaffDep
) -> Response:
    """A zip with evidence.json (everything recorded about the return) and the photo files."""
    # A plain `def` endpoint: FastAPI runs it in the thread pool, so reading blobs, hashing and
    # zipping never block the event loop. The zip is spooled to disk and streamed out, so its
    # size does not become the server's memory. The stream closes the file when it is sent.
    spool = tempfile.SpooledTemporaryFile(max_size=EVIDENCE_SPOOL_BYTES)  # noqa: SIM115
    try:
        pack = write_evidence(
            session=session,
            return_id=ret.id or 0,
            blobs=blobs,
            generated_by=principal.actor,
            out=spool,
            pipeline=getattr(request.app.state, "grading", None),
        )
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(
        _chunks_then_close(spool),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{pack.filename}"',
            "Content-Length": str(size),
        },
    )


def _chunks_then_close(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := spool.read(EVIDENCE_CHUNK_BYTES):
            yield chunk
    finally:
        spool.close()
