"""The `inspection` command: run the service, prepare the database, grade photos from disk."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from inspection.errors import InspectionError
from inspection.settings import get_settings

app = typer.Typer(help="Returns-inspection service.", no_args_is_help=True)
log = logging.getLogger(__name__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Starts the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    get_settings()  # fail fast on bad settings before binding the port
    uvicorn.run("inspection.api.main:app", host=host, port=port, workers=workers, log_level="info")


@app.command("init-db")
def init_db(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also load demo customers and orders.")
    ] = False,
) -> None:
    """Creates or migrates the database; with --demo, loads demo orders (idempotent)."""
    from inspection.store.db import init_database

    summary = init_database(settings=get_settings(), demo=demo)
    typer.echo(summary)


@app.command()
def grade(
    paths: Annotated[list[Path], typer.Argument(help="Image files to grade.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    category: Annotated[str | None, typer.Option(help="Product category.")] = None,
) -> None:
    """Grades image files with the bundled models."""
    from inspection.grading.pipeline import GradingPipeline

    pipeline = GradingPipeline.from_settings(settings=get_settings())
    results: list[dict[str, object]] = []
    failed = False
    for path in paths:
        try:
            data = path.read_bytes()
            photo = pipeline.intake(data=data, content_type=None, filename=path.name)
            result = pipeline.grade_photos(photos=[photo], category=category).photos[0]
            results.append(
                {
                    "file": str(path),
                    "grade": result.grade,
                    "confidence": round(result.confidence, 4),
                    "probabilities": {k: round(v, 4) for k, v in result.probabilities.items()},
                    "defects": [d.model_dump() for d in result.defects],
                    "quality": result.quality.model_dump(),
                    "model_version": result.model_version,
                }
            )
        except OSError as exc:
            failed = True
            results.append({"file": str(path), "error": f"cannot read file: {exc.strerror}"})
        except InspectionError as exc:
            failed = True
            results.append({"file": str(path), "error": exc.message, "hint": exc.hint})
    if as_json:
        typer.echo(json.dumps(results, indent=2, default=str))
    else:
        for row in results:
            if "error" in row:
                typer.echo(f"{row['file']}: ERROR {row['error']}", err=True)
            else:
                probs = ", ".join(f"{k}={v:.2f}" for k, v in row["probabilities"].items())  # type: ignore[attr-defined]
                typer.echo(f"{row['file']}: {row['grade']} ({probs})")
    if failed:
        sys.exit(1)


@app.command("check-policy")
def check_policy(
    path: Annotated[
        Path | None, typer.Argument(help="Policy YAML (default: INSPECTION_POLICY_PATH).")
    ] = None,
) -> None:
    """Validates a returns policy file before it goes live; names every bad key."""
    from inspection.decisions.policy import load_policy

    target = path or get_settings().policy.path
    try:
        policy = load_policy(target)
    except InspectionError as exc:
        typer.echo(f"{exc.message}\nhint: {exc.hint}" if exc.hint else exc.message, err=True)
        sys.exit(1)
    typer.echo(
        f"{target}: policy version {policy.version}, time zone {policy.timezone}, "
        f"categories {', '.join(sorted(policy.categories))}"
    )


@app.command("purge-photos")
def purge_photos(
    days: Annotated[
        int | None, typer.Option(help="Retention in days (default: the storage setting).")
    ] = None,
) -> None:
    """Erases customer photos older than the retention period (the audit log keeps the fact)."""
    from sqlmodel import Session

    from inspection.returns.photos import purge_expired_photos
    from inspection.store.blobs import BlobStore
    from inspection.store.db import init_engine

    settings = get_settings()
    retention = days if days is not None else settings.storage.photo_retention_days
    if retention < 1:
        typer.echo("--days must be at least 1", err=True)
        raise typer.Exit(2)
    engine = init_engine(settings=settings)
    try:
        with Session(engine) as session:
            purged = purge_expired_photos(
                session=session,
                blobs=BlobStore(settings.storage.blob_dir),
                retention_days=retention,
            )
    finally:
        engine.dispose()
    typer.echo(f"purged {purged} customer photo(s) older than {retention} days")


@app.command("create-api-key")
def create_api_key_command(
    role: Annotated[str, typer.Option(help="station, qa, admin or integration.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
) -> None:
    """Creates a staff API key stored hashed; the key is printed once."""
    from sqlmodel import Session

    from inspection.store.api_keys import create_api_key
    from inspection.store.db import init_engine

    engine = init_engine(settings=get_settings())
    try:
        with Session(engine) as session:
            key = create_api_key(session=session, role=role, name=name)
    except InspectionError as exc:
        typer.echo(f"error: {exc.message} ({exc.hint})", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(key)


@app.command("deliver-webhooks")
def deliver_webhooks(
    loop: Annotated[
        bool, typer.Option("--loop", help="Keep delivering (a worker beside API replicas).")
    ] = False,
) -> None:
    """Delivers due webhooks once (or, with --loop, until interrupted)."""
    import time

    from inspection.returns.webhooks import deliver_due
    from inspection.store.db import init_engine

    settings = get_settings()
    engine = init_engine(settings=settings)
    try:
        while True:
            sent = deliver_due(engine=engine, settings=settings)
            if not loop:
                typer.echo(f"attempted {sent} delivery(ies)")
                return
            if not sent:
                time.sleep(settings.webhook.worker_interval_seconds)
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        engine.dispose()


@app.command("verify-audit")
def verify_audit() -> None:
    """Recomputes every audit hash chain; exits 1 naming each chain that is broken."""
    from sqlmodel import Session

    from inspection.returns.audit import verify_all_chains
    from inspection.store.db import init_engine

    engine = init_engine(settings=get_settings())
    try:
        with Session(engine) as session:
            results = verify_all_chains(session=session)
    finally:
        engine.dispose()
    broken = {name: r for name, r in results.items() if not r.valid}
    for name, result in broken.items():
        typer.echo(f"{name}: broken at seq {result.broken_at_seq}: {result.problem}", err=True)
    typer.echo(f"{len(results) - len(broken)} of {len(results)} audit chain(s) valid")
    if broken:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
