"""The real service under load: POST /v1/grade and photo upload at concurrency 1/4/16.

Starts uvicorn in a subprocess (tmp SQLite file, tmp blob folder, bundled models) and drives it
from this process with an async httpx loop sending 12 MP phone JPEGs; measures the in-process
GradingPipeline on the same photos first (server not yet started, so they never compete for the
cores) and reports the HTTP + DB + storage overhead; then the grader micro-batching both ways
and the service with the INT8 grader option.
Writes results/service.md.

    .venv/bin/python -m benchmarks.bench_service [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks.live_server import LiveServer
from benchmarks.machine import facts_markdown, load_average, markdown_table, write_result
from benchmarks.phone_photos import phone_photos

log = logging.getLogger("benchmarks.service")

REPO = Path(__file__).resolve().parent.parent
STATION = {"X-API-Key": "demo-station-key"}
INTEGRATION = {"X-API-Key": "demo-integration-key"}
PHOTOS_PER_RETURN = 6
MAX_PHOTOS_PER_S = 45.0
TARGET_P99_MS_C4 = 200.0
TARGET_OVERHEAD = 0.30
TARGET_PHOTOS_PER_S = 25.0
CONCURRENCY = (1, 4, 16)
BATCHED = 8
INT8_GRADER = "grader-int8"
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Plan:
    """Seconds of load per (endpoint, concurrency) cell, with a cap on requests per cell."""

    seconds: float
    max_requests: int
    photos: int
    grader_rows: int


FULL = Plan(seconds=20.0, max_requests=2000, photos=12, grader_rows=256)
QUICK = Plan(seconds=4.0, max_requests=200, photos=4, grader_rows=48)


@dataclass
class LoadResult:
    """One cell of the load table."""

    endpoint: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0  # user+system of the server process over the timed part
    client_cpu_s: float = 0.0  # the same for this (the load-generating) process

    @property
    def done(self) -> int:
        """Requests answered with 2xx."""
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Successful requests (= photos, one per request) per second."""
        return self.done / self.wall_s if self.wall_s else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in ms."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def cpu_ms_per_photo(self, side: str) -> float:
        """CPU ms per answered request of the server or of the client ("server"/"client")."""
        cpu = self.server_cpu_s if side == "server" else self.client_cpu_s
        return cpu * 1000 / self.done if self.done else float("nan")


def _own_cpu_s() -> float:
    """user+system seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


# --- models --------------------------------------------------------------------------------


def resolve_models_dir(work: Path, notes: list[str]) -> Path:
    """The bundled models/ folder, or a fallback grader when none is bundled yet."""
    bundled = REPO / "models"
    if (bundled / "grader" / "model_card.yaml").exists():
        if not (bundled / "detector" / "model_card.yaml").exists():
            notes.append("models/detector is missing: measured without the defect detector.")
        return bundled
    from benchmarks.bench_quantization import export_imagenet_lite0

    notes.append(
        "No bundled models/grader yet: the server ran an ImageNet EfficientNet-Lite0 grader "
        "(untrained head) and no defect detector, so per-photo work is lower than production."
    )
    fallback = work / "models"
    export_imagenet_lite0(fallback / "grader")
    return fallback


# --- in-process pipeline -------------------------------------------------------------------


def _pipeline_settings(
    models_dir: Path, *, max_batch: int | None = None, grader: str = "grader"
) -> Any:
    from inspection.settings import ModelSettings, Settings

    settings = Settings()
    overrides: dict[str, Any] = {"dir": models_dir, "grader": grader}
    if max_batch is not None:
        overrides["max_batch"] = max_batch
    settings.model = ModelSettings(**overrides)
    return settings


def measure_inprocess(
    models_dir: Path,
    photos: list[bytes],
    *,
    concurrency: int,
    seconds: float,
    max_photos: int,
    grader: str = "grader",
) -> dict[str, float]:
    """Photos/s of GradingPipeline.intake + grade_photos, one photo per call, N threads, for as
    long as one HTTP cell runs: a short burst here (it was 48 photos, ~1 s) moved the baseline
    by 15 % between runs and ran at a clock the 20-s HTTP cells do not get."""
    from inspection.grading.pipeline import GradingPipeline

    pipeline = GradingPipeline.from_settings(settings=_pipeline_settings(models_dir, grader=grader))
    if not pipeline.ready:
        raise RuntimeError(f"models in {models_dir} did not load")
    latencies: list[float] = []
    taken = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        data = photos[i % len(photos)]
        start = time.perf_counter()
        photo = pipeline.intake(data=data, content_type="image/jpeg", filename="p.jpg")
        pipeline.grade_photos(photos=[photo], category="electronics", source="grade")
        latencies.append((time.perf_counter() - start) * 1000)

    def worker(deadline: float) -> None:
        nonlocal taken
        while time.perf_counter() < deadline:
            with lock:
                if taken >= max_photos:
                    return
                index = taken
                taken += 1
            one(index)

    try:
        for i in range(min(4, len(photos))):  # warm-up: sessions, allocator, caches
            one(i)
        latencies.clear()
        cpu_before = _own_cpu_s()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, [started + seconds] * concurrency))
        wall = time.perf_counter() - started
        cpu = _own_cpu_s() - cpu_before
    finally:
        pipeline.close()
    return {
        "photos_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "cpu_ms_per_photo": cpu * 1000 / len(latencies),
    }


def measure_grader_batching(
    models_dir: Path, *, max_batch: int, concurrency: int, rows: int
) -> dict[str, float]:
    """Grader alone (preprocessed 224 px photos), N threads, one photo per call."""
    from inspection.grading.predictors import OnnxGrader

    settings = _pipeline_settings(models_dir, max_batch=max_batch)
    grader = OnnxGrader(model_dir=models_dir / "grader", settings=settings.model)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8) for _ in range(8)]
    try:
        for image in images[:4]:
            grader.predict(image)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: grader.predict(images[i % len(images)]), range(rows)))
        wall = time.perf_counter() - started
        mean_batch = grader.batcher.stats.mean_batch
    finally:
        grader.close()
    return {"photos_per_s": rows / wall, "mean_batch": mean_batch}


# --- HTTP load -----------------------------------------------------------------------------


async def _setup_returns(client: httpx.AsyncClient, count: int) -> list[tuple[int, str]]:
    """Creates `count` orders and opens one return on each; (return id, customer token)."""
    from datetime import UTC, datetime, timedelta

    made = []
    now = datetime.now(UTC)
    for i in range(count):
        tag = f"{int(time.time() * 1000) % 10**9}-{i}"
        order = {
            "order_number": f"BENCH-{tag}",
            "customer": {"external_id": f"bench-{tag}", "email": f"bench-{tag}@example.com"},
            "ordered_at": (now - timedelta(days=6)).isoformat(),
            "delivered_at": (now - timedelta(days=3)).isoformat(),
            "currency": "EUR",
            "lines": [
                {
                    "sku": "PHONE-X12",
                    "name": "Phone X12",
                    "category": "electronics",
                    "price_cents": 49900,
                }
            ],
        }
        created = await client.post("/v1/orders", json=order, headers=INTEGRATION)
        created.raise_for_status()
        body = created.json()
        opened = await client.post(
            "/v1/returns",
            json={
                "order_number": body["order_number"],
                "email": body["customer"]["email"],
                "items": [{"order_line_id": body["lines"][0]["id"], "reason_code": "defective"}],
            },
        )
        opened.raise_for_status()
        made.append((opened.json()["return"]["id"], opened.json()["customer_token"]))
    return made


async def drive(
    base_url: str,
    *,
    endpoint: str,
    concurrency: int,
    photos: list[bytes],
    seconds: float,
    max_requests: int,
    server_pid: int | None = None,
) -> LoadResult:
    """`concurrency` workers send requests back to back until the time or count runs out.

    With `server_pid`, the server's and this process's CPU time over the timed part (returns
    set up and warm-up requests excluded) go into the result.
    """
    result = LoadResult(endpoint=endpoint, concurrency=concurrency)
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        targets: list[tuple[int, str]] = []
        if endpoint == "upload":
            # A customer sends a handful of photos per return, so each worker moves to a fresh
            # return every PHOTOS_PER_RETURN photos (returns opened before the clock starts,
            # enough for MAX_PHOTOS_PER_S): a return with hundreds of photos is not a workload.
            expected = min(max_requests, int(seconds * MAX_PHOTOS_PER_S))
            per_worker = math.ceil(expected / concurrency / PHOTOS_PER_RETURN) + 1
            targets = await _setup_returns(client, concurrency * per_worker)
        sent = 0
        deadline = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal sent
            mine = 0
            while time.perf_counter() < deadline and sent < max_requests:
                index = sent
                sent += 1
                data = photos[index % len(photos)]
                files = [("files", (f"photo{index}.jpg", data, "image/jpeg"))]
                start = time.perf_counter()
                try:
                    if endpoint == "grade":
                        response = await client.post(
                            "/v1/grade",
                            files=files,
                            data={"category": "electronics"},
                            headers=STATION,
                        )
                    else:
                        # this worker's own returns, one after the other, as a customer would
                        turn = w + concurrency * (mine // PHOTOS_PER_RETURN)
                        return_id, token = targets[turn % len(targets)]
                        mine += 1
                        response = await client.post(
                            f"/v1/returns/{return_id}/photos",
                            files=files,
                            data={"source": "customer"},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                except httpx.HTTPError as exc:
                    result.errors += 1
                    if len(result.error_samples) < 3:
                        result.error_samples.append(repr(exc))
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                if response.is_success:
                    result.latencies_ms.append(elapsed)
                else:
                    result.errors += 1
                    if len(result.error_samples) < 3:
                        result.error_samples.append(f"{response.status_code} {response.text[:200]}")

        # One untimed request per worker first: connections open, server threads warm.
        warm = max(concurrency, 2)
        await asyncio.gather(
            *[
                client.post(
                    "/v1/grade",
                    files=[("files", ("w.jpg", photos[i % len(photos)], "image/jpeg"))],
                    headers=STATION,
                )
                for i in range(warm)
            ]
        )
        server_before = _process_cpu_s(server_pid) if server_pid else 0.0
        client_before = _own_cpu_s()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        result.wall_s = time.perf_counter() - started
        result.client_cpu_s = _own_cpu_s() - client_before
        if server_pid:
            result.server_cpu_s = _process_cpu_s(server_pid) - server_before
    return result


def server_peak_rss_mb(server: LiveServer) -> float:
    """VmHWM of the server process: its peak resident memory so far."""
    if server.process is None:
        return 0.0
    try:
        status = Path(f"/proc/{server.process.pid}/status").read_text(encoding="utf-8")
    except OSError:
        return server.rss_bytes() / 2**20
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def run_server_cells(
    server: LiveServer,
    cells: list[tuple[str, int]],
    photos: list[bytes],
    plan: Plan,
) -> list[LoadResult]:
    """Runs each (endpoint, concurrency) cell against a started server."""
    results = []
    for endpoint, concurrency in cells:
        result = asyncio.run(
            drive(
                server.base_url,
                endpoint=endpoint,
                concurrency=concurrency,
                photos=photos,
                seconds=plan.seconds,
                max_requests=plan.max_requests,
                server_pid=server.process.pid if server.process else None,
            )
        )
        log.warning(
            "%s c=%d: %.1f/s p50 %.0f ms p99 %.0f ms errors %d",
            endpoint,
            concurrency,
            result.throughput,
            result.pct(50),
            result.pct(99),
            result.errors,
        )
        results.append(result)
    return results


# --- report --------------------------------------------------------------------------------


def _int8_section(rows: list[list[Any]], inproc: dict[str, float] | None) -> list[str]:
    if inproc is None:
        return []
    return [
        f"### The INT8 grader option (`INSPECTION_MODEL_GRADER={INT8_GRADER}`)",
        "",
        "A third server loads the bundled INT8 grader (its card holds the accuracy it was "
        "measured at); everything else is the same. In-process with the INT8 grader at "
        f"concurrency 4: {inproc['photos_per_s']:.1f} photos/s, "
        f"{inproc['cpu_ms_per_photo']:.0f} CPU ms per photo; overhead is against that.",
        "",
        markdown_table(
            [
                "endpoint",
                "concurrency",
                "fp32 photos/s",
                "fp32 p99 ms",
                "INT8 photos/s",
                "INT8 p50 ms",
                "INT8 p99 ms",
                "INT8 overhead",
                "INT8 server CPU ms",
            ],
            rows,
        ),
        "",
    ]


def _verdict(ok: bool) -> str:
    return "**MET**" if ok else "**NOT MET**"


def run(*, plan: Plan, quick: bool) -> str:
    """Measures in-process, then over HTTP, then batching both ways; returns markdown."""
    notes: list[str] = []
    load_start = load_average()
    loads: list[float] = []
    stop_sampling = threading.Event()

    def sample_load() -> None:
        while not stop_sampling.wait(2.0):
            loads.append(load_average()[0])

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        models_dir = resolve_models_dir(work, notes)
        photos = phone_photos(plan.photos)
        mb = statistics.mean(len(p) for p in photos) / 1e6

        inproc = {
            c: measure_inprocess(
                models_dir,
                photos,
                concurrency=c,
                seconds=plan.seconds,
                max_photos=plan.max_requests,
            )
            for c in (1, 4)
        }
        batching: dict[tuple[int, int], dict[str, float]] = {}
        for max_batch in (1, BATCHED):
            for c in (1, 4, 16):
                batching[(max_batch, c)] = measure_grader_batching(
                    models_dir, max_batch=max_batch, concurrency=c, rows=plan.grader_rows
                )

        inproc_int8: dict[str, float] | None = None
        if (models_dir / INT8_GRADER / "model_card.yaml").exists():
            inproc_int8 = measure_inprocess(
                models_dir,
                photos,
                concurrency=4,
                seconds=plan.seconds,
                max_photos=plan.max_requests,
                grader=INT8_GRADER,
            )
        else:
            notes.append(f"No {INT8_GRADER} model folder: the INT8 grader was not measured.")

        cells = [(e, c) for e in ("grade", "upload") for c in CONCURRENCY]
        with LiveServer(workdir=work / "server", models_dir=models_dir) as server:
            idle_rss = server.rss_bytes() / 2**20
            results = run_server_cells(server, cells, photos, plan)
            peak_rss = server_peak_rss_mb(server)
        # The same service with micro-batching on (the default is off), for the comparison at
        # concurrency >= 4.
        with LiveServer(
            workdir=work / "server-batch",
            models_dir=models_dir,
            env_overrides={"INSPECTION_MODEL_MAX_BATCH": str(BATCHED)},
        ) as server:
            batched = run_server_cells(server, [("grade", 4), ("grade", 16)], photos, plan)
        # The same service with the INT8 grader (an option: it grades ~5 % of photos differently).
        int8_results: list[LoadResult] = []
        if inproc_int8 is not None:
            with LiveServer(
                workdir=work / "server-int8",
                models_dir=models_dir,
                env_overrides={"INSPECTION_MODEL_GRADER": INT8_GRADER},
            ) as server:
                int8_results = run_server_cells(server, [("grade", 4), ("upload", 4)], photos, plan)
    finally:
        stop_sampling.set()
        shutil.rmtree(work, ignore_errors=True)

    by = {(r.endpoint, r.concurrency): r for r in results}
    rows = [
        [
            r.endpoint,
            r.concurrency,
            r.done,
            r.errors,
            f"{r.throughput:.1f}",
            f"{r.pct(50):.0f}",
            f"{r.pct(99):.0f}",
        ]
        for r in results
    ]
    overhead_rows = []
    for c in (1, 4):
        base = inproc[c]["photos_per_s"]
        for endpoint in ("grade", "upload"):
            cell = by[(endpoint, c)]
            overhead = base / cell.throughput - 1 if cell.throughput else float("inf")
            overhead_rows.append(
                [
                    endpoint,
                    c,
                    f"{base:.1f}",
                    f"{cell.throughput:.1f}",
                    f"{overhead * 100:+.0f} %",
                    f"{inproc[c]['cpu_ms_per_photo']:.0f}",
                    f"{cell.cpu_ms_per_photo('server'):.0f}",
                    f"{cell.cpu_ms_per_photo('client'):.1f}",
                ]
            )
    batch_rows = [
        [
            c,
            f"{batching[(1, c)]['photos_per_s']:.0f}",
            f"{batching[(BATCHED, c)]['photos_per_s']:.0f}",
            f"{batching[(BATCHED, c)]['mean_batch']:.1f}",
            f"{batching[(BATCHED, c)]['photos_per_s'] / batching[(1, c)]['photos_per_s']:.2f}x",
        ]
        for c in (1, 4, 16)
    ]
    batched_by = {r.concurrency: r for r in batched}
    service_batch_rows = [
        [
            c,
            f"{by[('grade', c)].throughput:.1f}",
            f"{by[('grade', c)].pct(99):.0f}",
            f"{batched_by[c].throughput:.1f}",
            f"{batched_by[c].pct(99):.0f}",
        ]
        for c in (4, 16)
    ]
    int8_rows = []
    for r in int8_results:
        fp32 = by[(r.endpoint, r.concurrency)]
        base = inproc_int8["photos_per_s"] if inproc_int8 else float("nan")
        int8_rows.append(
            [
                r.endpoint,
                r.concurrency,
                f"{fp32.throughput:.1f}",
                f"{fp32.pct(99):.0f}",
                f"{r.throughput:.1f}",
                f"{r.pct(50):.0f}",
                f"{r.pct(99):.0f}",
                f"{base / r.throughput - 1:+.0%}" if r.throughput else "n/a",
                f"{r.cpu_ms_per_photo('server'):.0f}",
            ]
        )
    grade4, upload4 = by[("grade", 4)], by[("upload", 4)]
    best = max(r.throughput for r in results if r.endpoint == "upload")
    overhead4 = inproc[4]["photos_per_s"] / upload4.throughput - 1 if upload4.throughput else 1e9
    everything = [*results, *batched, *int8_results]
    errors = sum(r.errors for r in everything)
    samples = [s for r in everything for s in r.error_samples][:5]
    load_peak = max(loads, default=load_start[0])

    lines = [
        "## Service under load (real uvicorn server, 12 MP phone JPEGs)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.bench_service{' --quick' if quick else ''}`",
        "",
        facts_markdown(),
        f"- load during run: {load_start[0]:.2f} at start, peak {load_peak:.2f} (1 min average;"
        " above 2 means other work shared the cores and every figure below is pessimistic)",
        f"- photos: {len(photos)} distinct 4000x3000 JPEGs, quality 90, mean {mb:.1f} MB, "
        "one photo per request",
        f"- server: one uvicorn process, SQLite file, local blob folder, models from "
        f"`{models_dir.relative_to(REPO) if models_dir.is_relative_to(REPO) else 'fallback'}`"
        f"; client: async httpx in a second process, {plan.seconds:.0f} s per cell",
        f"- server RSS: {idle_rss:.0f} MB idle with models loaded, "
        f"peak {peak_rss:.0f} MB under load",
        "",
        "### Throughput and latency",
        "",
        markdown_table(
            ["endpoint", "concurrency", "requests", "errors", "photos/s", "p50 ms", "p99 ms"], rows
        ),
        "",
        "### HTTP + database + storage overhead",
        "",
        "In-process = `GradingPipeline.intake` + `grade_photos` on the same photos from N threads "
        f"in this process for {plan.seconds:.0f} s (before the server started). Overhead = extra "
        "time per photo. CPU ms per photo (user + system, all threads): in-process; the server "
        "process; the load-generating client, which shares the two cores with the server.",
        "",
        markdown_table(
            [
                "endpoint",
                "concurrency",
                "in-process photos/s",
                "HTTP photos/s",
                "overhead",
                "in-process CPU ms",
                "server CPU ms",
                "client CPU ms",
            ],
            overhead_rows,
        ),
        "",
        "### Grader micro-batching, both ways",
        "",
        "Grader alone in-process (photos preprocessed to the model input, N threads calling "
        f"`OnnxGrader.predict`), `max_batch=1` (off, the default) vs {BATCHED}:",
        "",
        markdown_table(
            [
                "threads",
                "max_batch=1 photos/s",
                f"max_batch={BATCHED} photos/s",
                "mean batch",
                "ratio",
            ],
            batch_rows,
        ),
        "",
        "The whole service, `POST /v1/grade` (a second server with "
        f"`INSPECTION_MODEL_MAX_BATCH={BATCHED}`):",
        "",
        markdown_table(
            [
                "concurrency",
                "max_batch=1 photos/s",
                "max_batch=1 p99 ms",
                f"max_batch={BATCHED} photos/s",
                f"max_batch={BATCHED} p99 ms",
            ],
            service_batch_rows,
        ),
        "",
        *_int8_section(int8_rows, inproc_int8),
        "### Targets",
        "",
        f"- `/v1/grade` p99 <= {TARGET_P99_MS_C4:.0f} ms at concurrency 4: "
        f"{_verdict(grade4.pct(99) <= TARGET_P99_MS_C4)} ({grade4.pct(99):.0f} ms)",
        f"- HTTP + DB + storage overhead <= {TARGET_OVERHEAD:.0%} (upload, concurrency 4): "
        f"{_verdict(overhead4 <= TARGET_OVERHEAD)} ({overhead4 * 100:+.0f} %)",
        f"- >= {TARGET_PHOTOS_PER_S:.0f} photos/s sustained (upload, best concurrency): "
        f"{_verdict(best >= TARGET_PHOTOS_PER_S)} ({best:.1f} photos/s)",
        f"- errors: {errors}" + (f" (e.g. {samples})" if samples else ""),
    ]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: runs the benchmark, prints and writes results/service.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 s per cell")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    text = run(plan=QUICK if args.quick else FULL, quick=args.quick)
    path = write_result("service", text)
    sys.stdout.write(text + f"\n\n(written to {path.relative_to(REPO)})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
