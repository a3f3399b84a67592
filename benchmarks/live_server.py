"""Starts the real service (uvicorn in a subprocess) on 127.0.0.1 for benchmarks and fault tests.

The server gets its own SQLite file, blob folder and models folder through INSPECTION_* env
vars, so a run never touches var/; `kill()` is a SIGKILL (no clean shutdown), `restart()` brings
it back on the same database and blobs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """One uvicorn process serving `inspection.api.main:app` on a private database."""

    workdir: Path
    models_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_path(self) -> Path:
        """The SQLite file this server writes."""
        return self.workdir / "inspection.db"

    @property
    def blob_dir(self) -> Path:
        """The blob folder this server writes."""
        return self.workdir / "blobs"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout/stderr go (read it when a start fails)."""
        return self.workdir / "server.log"

    def environment(self) -> dict[str, str]:
        """The process environment: this server's database, blobs and models."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTION_")}
        env.update(
            {
                "INSPECTION_DATABASE_URL": f"sqlite:///{self.database_path}",
                "INSPECTION_STORAGE_BLOB_DIR": str(self.blob_dir),
                "INSPECTION_MODEL_DIR": str(self.models_dir),
                "INSPECTION_POLICY_PATH": str(REPO / "datasets/policy/returns-policy.yaml"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> LiveServer:
        """Starts uvicorn and waits until /readyz answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "inspection.api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                # Clients under load reuse idle connections; uvicorn's 5 s default closes them
                # while a request may be on its way (a client-side ReadError, not a server fault).
                "--timeout-keep-alive",
                "75",
            ],
            cwd=REPO,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Polls /readyz until 200; raises with the server log's tail if it never gets there."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            try:
                response = httpx.get(f"{self.base_url}/readyz", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s ({last}): {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident memory of the server process (and any children)."""
        if self.process is None or self.process.poll() is not None:
            return 0
        proc = psutil.Process(self.process.pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return int(total)

    def kill(self) -> None:
        """SIGKILL: the process dies mid-request with no shutdown hooks, like a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self._close_log()

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._close_log()

    def restart(self, timeout: float = STARTUP_TIMEOUT_S) -> LiveServer:
        """Starts again on the same port, database and blob folder."""
        self.stop()
        return self.start(timeout)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
