"""`make soak`: 10 minutes of mixed load on the real server, watching its memory.

Four async clients grade 12 MP photos, open returns and upload photos, read returns and images,
and walk returns all the way to a released refund (with a retried release), while the server's
RSS is sampled every few seconds. Passes when RSS grows less than 10 % from the end of warm-up
to the end of the run. Writes benchmarks/results/soak.md. Opt-in: never part of `make test`.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_service import resolve_models_dir
from benchmarks.live_server import LiveServer
from benchmarks.machine import facts_markdown, load_average, markdown_table, write_result
from benchmarks.phone_photos import phone_photos

log = logging.getLogger("benchmarks.soak")

REPO = Path(__file__).resolve().parent.parent
STATION = {"X-API-Key": "demo-station-key"}
ADMIN = {"X-API-Key": "demo-admin-key"}
INTEGRATION = {"X-API-Key": "demo-integration-key"}
MAX_RSS_GROWTH = 0.10
SAMPLE_EVERY_S = 3.0
# Mix of work per client iteration (weights): what a busy returns desk does.
MIX = {"grade": 3, "upload": 3, "read": 3, "refund": 1}


class Soak:
    """The load: a set of clients sharing counters and the returns they opened."""

    def __init__(self, base_url: str, photos: list[bytes], small: list[bytes]) -> None:
        self.base_url = base_url
        self.photos = photos
        self.small = small
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.returns: list[tuple[int, str]] = []
        self.photo_ids: list[int] = []
        self.seq = 0

    def _fail(self, action: str, what: str) -> None:
        self.errors[action] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{action}: {what[:200]}")

    async def _check(self, action: str, response: httpx.Response, *ok: int) -> Any:
        if response.status_code not in ok:
            self._fail(action, f"{response.status_code} {response.text}")
            return None
        return response.json() if "json" in response.headers.get("content-type", "") else True

    async def open_return(self, client: httpx.AsyncClient, action: str) -> tuple[int, str] | None:
        self.seq += 1
        tag = f"{int(time.time())}-{self.seq}"
        now = datetime.now(UTC)
        order = {
            "order_number": f"SOAK-{tag}",
            "customer": {"external_id": f"soak-{tag}", "email": f"soak-{tag}@example.com"},
            "ordered_at": (now - timedelta(days=6)).isoformat(),
            "delivered_at": (now - timedelta(days=3)).isoformat(),
            "currency": "EUR",
            "lines": [
                {
                    "sku": "PHONE-X12",
                    "name": "Phone",
                    "category": "electronics",
                    "price_cents": 39900,
                }
            ],
        }
        body = await self._check(
            action, await client.post("/v1/orders", json=order, headers=INTEGRATION), 201
        )
        if not body:
            return None
        opened = await self._check(
            action,
            await client.post(
                "/v1/returns",
                json={
                    "order_number": body["order_number"],
                    "email": body["customer"]["email"],
                    "items": [
                        {"order_line_id": body["lines"][0]["id"], "reason_code": "defective"}
                    ],
                },
            ),
            201,
        )
        if not opened:
            return None
        pair = (int(opened["return"]["id"]), str(opened["customer_token"]))
        self.returns.append(pair)
        return pair

    async def upload(
        self,
        client: httpx.AsyncClient,
        rid: int,
        token: str,
        photos: list[bytes],
        source: str,
        action: str,
    ) -> bool:
        headers = {"Authorization": f"Bearer {token}"} if source == "customer" else STATION
        body = await self._check(
            action,
            await client.post(
                f"/v1/returns/{rid}/photos",
                files=[("files", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
                data={"source": source},
                headers=headers,
            ),
            201,
        )
        if body:
            self.photo_ids.extend(int(p["id"]) for p in body["photos"])
        return bool(body)

    async def do_grade(self, client: httpx.AsyncClient) -> None:
        data = random.choice(self.photos)
        await self._check(
            "grade",
            await client.post(
                "/v1/grade", files=[("files", ("p.jpg", data, "image/jpeg"))], headers=STATION
            ),
            200,
        )

    async def do_upload(self, client: httpx.AsyncClient) -> None:
        pair = await self.open_return(client, "upload")
        if pair:
            await self.upload(client, *pair, [random.choice(self.photos)], "customer", "upload")

    async def do_read(self, client: httpx.AsyncClient) -> None:
        if not self.returns or not self.photo_ids:
            return await self.do_grade(client)
        rid, token = random.choice(self.returns)
        await self._check(
            "read",
            await client.get(f"/v1/returns/{rid}", headers={"Authorization": f"Bearer {token}"}),
            200,
        )
        await self._check(
            "read", await client.get("/v1/returns", params={"limit": 20}, headers=STATION), 200
        )
        photo_id = random.choice(self.photo_ids)
        response = await client.get(f"/v1/photos/{photo_id}/image", headers=STATION)
        if response.status_code != 200:
            self._fail("read", f"{response.status_code} image {photo_id}")
        await self._check("read", await client.get("/v1/stats", headers=STATION), 200)

    async def do_refund(self, client: httpx.AsyncClient) -> None:
        pair = await self.open_return(client, "refund")
        if not pair:
            return
        rid, token = pair
        if not await self.upload(client, rid, token, self.small[:3], "customer", "refund"):
            return
        state = await self._check(
            "refund",
            await client.post(
                f"/v1/returns/{rid}/submit", headers={"Authorization": f"Bearer {token}"}
            ),
            200,
        )
        if state and state["status"] == "needs_review":
            state = await self._check(
                "refund",
                await client.post(
                    f"/v1/returns/{rid}/decision",
                    json={"outcome": "approve", "reason": "soak test approval"},
                    headers=ADMIN,
                ),
                200,
            )
        if not state or state["status"] != "label_sent":
            if state:
                self.counts["refund_not_approved"] += 1
            return
        if not await self.upload(client, rid, token, self.small[:1], "station", "refund"):
            return
        steps = [
            (f"/v1/returns/{rid}/receive", None, (200,)),
            (f"/v1/returns/{rid}/inspection", {"grade": "resell", "reason": "soak: fine"}, (200,)),
            (f"/v1/returns/{rid}/refund", None, (201,)),
            (f"/v1/returns/{rid}/refund", None, (200,)),  # a retry must not pay again
            (f"/v1/returns/{rid}/close", None, (200,)),
        ]
        for path, payload, ok in steps:
            state = await self._check(
                "refund", await client.post(path, json=payload, headers=STATION), *ok
            )
            if not state:
                return
            decision = (state.get("decision") if isinstance(state, dict) else None) or {}
            if path.endswith("/inspection") and decision.get("outcome") == "needs_review":
                # The same few photos on every return look like photo reuse: the refund is
                # held until a reviewer clears it, as QA would.
                self.counts["refund_held_for_review"] += 1
                if not await self._check(
                    "refund",
                    await client.post(
                        f"/v1/returns/{rid}/decision",
                        json={"outcome": "approve", "reason": "soak test review"},
                        headers=ADMIN,
                    ),
                    200,
                ):
                    return

    async def client_loop(self, deadline: float) -> None:
        actions = list(MIX)
        weights = [MIX[a] for a in actions]
        async with httpx.AsyncClient(base_url=self.base_url, timeout=120.0) as client:
            while time.monotonic() < deadline:
                action = random.choices(actions, weights)[0]
                try:
                    await getattr(self, f"do_{action}")(client)
                    self.counts[action] += 1
                except httpx.HTTPError as exc:
                    self._fail(action, repr(exc))

    async def run(self, *, seconds: float, concurrency: int) -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*[self.client_loop(deadline) for _ in range(concurrency)])


def server_log_errors(path: Path) -> Counter[str]:
    """What the server logged as errors, by message and exception (its last traceback line)."""
    found: Counter[str] = Counter()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") not in ("error", "critical"):
            continue
        message = str(record.get("msg", ""))
        exc = str(record.get("exc", "")).strip().splitlines()
        # The driver's own line ("sqlite3.OperationalError: database is locked") says most;
        # SQLAlchemy's trailer lines ([SQL: ...], (Background ...)) do not.
        causes = [ln.strip() for ln in exc if "Error:" in ln and not ln.startswith((" ", "["))]
        cause = causes[0] if causes else (exc[-1] if exc else "")
        # Incident ids differ per request; the route and the exception say what went wrong.
        where = message.split(" on ", 1)[-1] if " on " in message else message
        where = re.sub(r"/\d+", "/{id}", where)
        found[f"{where}: {cause[:160]}"] += 1
    return found


def run(*, minutes: float, concurrency: int, keep_log: Path | None = None) -> tuple[str, bool]:
    """Runs the soak; returns the markdown and whether it passed."""
    random.seed(0)
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    load_start = load_average()
    try:
        models_dir = resolve_models_dir(work, notes)
        photos = phone_photos(6)
        import io

        from PIL import Image

        small = []
        for data in photos[:3]:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (1000, 750))
            buffer = io.BytesIO()
            image.convert("RGB").resize((1600, 1200)).save(buffer, "JPEG", quality=90)
            small.append(buffer.getvalue())
        with LiveServer(workdir=work / "server", models_dir=models_dir) as server:
            started = time.monotonic()

            def sample() -> None:
                while not stop.wait(SAMPLE_EVERY_S):
                    rss.append((time.monotonic() - started, server.rss_bytes() / 2**20))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            soak = Soak(server.base_url, photos, small)
            asyncio.run(soak.run(seconds=minutes * 60, concurrency=concurrency))
            stop.set()
            sampler.join(10)
            elapsed = time.monotonic() - started
        server_errors = server_log_errors(server.log_path)
        if keep_log is not None:
            # The whole log, tracebacks included, outlives the throwaway server folder.
            shutil.copyfile(server.log_path, keep_log)
    finally:
        stop.set()
        shutil.rmtree(work, ignore_errors=True)

    warmup = min(120.0, elapsed * 0.2)
    window = max(30.0, elapsed * 0.1)
    base = [m for t, m in rss if warmup <= t <= warmup + window]
    end = [m for t, m in rss if t >= elapsed - window]
    baseline = statistics.median(base) if base else float("nan")
    final = statistics.median(end) if end else float("nan")
    growth = final / baseline - 1 if base and end else float("nan")
    errors = sum(soak.errors.values())
    passed = growth < MAX_RSS_GROWTH and errors == 0
    per_minute = []
    for minute in range(int(elapsed // 60) + 1):
        chunk = [m for t, m in rss if minute * 60 <= t < (minute + 1) * 60]
        if chunk:
            per_minute.append([minute, f"{min(chunk):.0f}", f"{max(chunk):.0f}"])
    lines = [
        "## Soak: mixed load on the real server",
        "",
        f"Command: `.venv/bin/python -m benchmarks.soak --minutes {minutes:g} "
        f"--concurrency {concurrency}` (`make soak` runs 10 minutes)",
        "",
        facts_markdown(),
        f"- load: {load_start[0]:.2f} at start, {load_average()[0]:.2f} at end (1 min)",
        f"- {concurrency} async clients for {elapsed / 60:.1f} min; mix (weights) {dict(MIX)}; "
        "12 MP JPEGs for grade/upload, 1600x1200 for the refund walk",
        "",
        markdown_table(
            ["action", "completed", "errors"],
            [[a, soak.counts[a], soak.errors[a]] for a in MIX],
        ),
        "",
        f"Returns opened: {len(soak.returns)}; photos stored: {len(soak.photo_ids)}; refund "
        f"walks held for review at inspection and cleared by a reviewer: "
        f"{soak.counts['refund_held_for_review']}.",
        "",
        "Server RSS (MB) per minute:",
        "",
        markdown_table(["minute", "min", "max"], per_minute),
        "",
        f"RSS after warm-up ({warmup:.0f} s + {window:.0f} s window): {baseline:.0f} MB; "
        f"at the end: {final:.0f} MB; growth {growth * 100:+.1f} % "
        f"(limit {MAX_RSS_GROWTH:.0%}).",
        "",
        f"Memory: **{'PASS' if growth < MAX_RSS_GROWTH else 'FAIL'}**. "
        f"Failed requests: **{errors}**" + (f" (e.g. {soak.samples})" if errors else "") + ".",
        "",
        f"Result: **{'PASS' if passed else 'FAIL'}** (needs RSS growth under the limit and no "
        "failed request).",
    ]
    if server_errors:
        lines += [
            "",
            "Errors in the server log (request, exception):",
            "",
            *[f"- {n} x {what}" for what, n in server_errors.most_common(8)],
        ]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines), passed


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: runs the soak and writes results/soak.md; exit 1 when it fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--keep-log", type=Path, default=None, help="copy the server's log (tracebacks) here"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    text, passed = run(minutes=args.minutes, concurrency=args.concurrency, keep_log=args.keep_log)
    path = write_result("soak", text)
    sys.stdout.write(text + f"\n\n(written to {path.relative_to(REPO)})\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
