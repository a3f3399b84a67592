"""Content-addressed filesystem blob store for photo originals and annotated images.

A blob's key is the SHA-256 of its bytes; files fan out as `ab/cd/<sha256>` so no directory
grows huge. Writes go to a temp file, are fsynced and then renamed into place, so a photo
whose upload was acknowledged is on disk whole, never half written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from inspection.errors import NotFound

log = logging.getLogger(__name__)


class BlobStore:
    """Stores bytes under their SHA-256; identical bytes are stored once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file path of a key (the key must be a sha256 hex digest)."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise NotFound(f"no blob with key {key[:80]!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes, *, key: str | None = None) -> str:
        """Stores `data` durably and returns its key (its sha256).

        `key` is the sha256 the caller already computed of these very bytes (intake hashes
        every photo), so a 3 MB photo is not hashed twice.
        """
        key = key or hashlib.sha256(data).hexdigest()
        path = self.path_for(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._fsync_dir(path.parent)
        return key

    def get(self, key: str) -> bytes:
        """Reads a blob; NotFound when it was never stored or has been deleted."""
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(
                "the image is no longer stored", hint="it may have been deleted on request"
            ) from exc

    def exists(self, key: str) -> bool:
        """Whether a blob is stored."""
        return self.path_for(key).exists()

    def delete(self, key: str) -> bool:
        """Removes a blob; returns whether it existed."""
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # The rename is only durable once the directory entry is flushed too.
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            log.debug("directory fsync not supported for %s", directory)
        finally:
            os.close(fd)
