"""Photos off a multipart request, for both routes that take them (`/v1/grade` and a return's
photo upload), and the process's grading pipeline that reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request, UploadFile

from inspection.errors import PhotoTooLarge, ServiceUnavailable
from inspection.grading.intake import display_name
from inspection.grading.pipeline import GradingPipeline, Upload
from inspection.observability import PHOTOS_REJECTED

# Read in chunks, so a huge file is refused at the limit instead of after it is all in memory.
READ_CHUNK = 1 << 20


def grading_pipeline(request: Request) -> GradingPipeline:
    """The process's pipeline, built at start-up; 503 until it is."""
    pipeline = getattr(request.app.state, "grading", None)
    if pipeline is None:
        raise ServiceUnavailable("grading is not started", hint="retry once the service is ready")
    return pipeline


def read_uploads(files: Sequence[UploadFile], *, max_bytes: int) -> list[Upload]:
    """Reads every file in full; a file over `max_bytes` is a 413 naming it (1-based, as the
    pipeline names a photo it refuses). Blocking reads: call it off the event loop."""
    return [_read_one(file, index=i, max_bytes=max_bytes) for i, file in enumerate(files, 1)]


def _read_one(file: UploadFile, *, index: int, max_bytes: int) -> Upload:
    chunks: list[bytes] = []
    size = 0
    while chunk := file.file.read(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            # Refused before the pipeline sees it, so counted here.
            PHOTOS_REJECTED.labels(code=PhotoTooLarge.code).inc()
            raise PhotoTooLarge(
                f"photo {index} ({display_name(file.filename)}) is over the "
                f"{max_bytes / 1e6:.1f} MB limit",
                hint="send the photo at a smaller size or higher compression",
                details={"file_index": index, "filename": file.filename, "max_bytes": max_bytes},
            )
        chunks.append(chunk)
    # The spooled copy is no longer needed: free it now rather than after the response.
    file.file.close()
    return Upload(data=b"".join(chunks), content_type=file.content_type, filename=file.filename)
