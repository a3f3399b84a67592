"""`make bench`: runs every benchmark (not the soak) and rewrites benchmarks/RESULTS.md.

Each `benchmarks/bench_*.py` runs in its own process (one benchmark's memory and threads never
colour the next), writes `results/<name>.md`, and those sections, with the training results,
are gathered into RESULTS.md under the machine facts, the date and the command.

    .venv/bin/python -m benchmarks.run [--quick] [--only grading,service]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import RESULTS_DIR, facts_markdown, load_average

log = logging.getLogger("benchmarks.run")

REPO = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO / "benchmarks" / "RESULTS.md"
# Run in this order (the cheap, load-sensitive ones first); any other bench_*.py follows.
PREFERRED = ("grading", "quantization", "service")
# Sections written by other steps than a benchmark module, included verbatim when present.
EXTRA_SECTIONS = (
    ("training", "written by the training pipeline"),
    ("soak", "written by `make soak` (opt-in, not re-run here)"),
)
TIMEOUT_S = 30 * 60


def discover() -> list[str]:
    """Benchmark names (bench_<name>.py), preferred ones first."""
    found = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    return [n for n in PREFERRED if n in found] + [n for n in found if n not in PREFERRED]


def run_one(name: str, *, quick: bool) -> tuple[int, float, str]:
    """Runs `python -m benchmarks.bench_<name>`; (exit code, seconds, output tail)."""
    source = (Path(__file__).parent / f"bench_{name}.py").read_text(encoding="utf-8")
    # Only modules that offer a smoke mode get --quick; the others run as they are.
    smoke = quick and '"--quick"' in source
    command = [sys.executable, "-m", f"benchmarks.bench_{name}"] + (["--quick"] if smoke else [])
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        code, output = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {TIMEOUT_S} s: {exc}"
    return code, time.perf_counter() - started, output[-2000:]


def section(name: str) -> str | None:
    """The markdown a benchmark wrote, if any."""
    path = RESULTS_DIR / f"{name}.md"
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmarks and writes RESULTS.md; exit code 1 if any benchmark failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--only", help="comma list of benchmark names (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    names = discover()
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        names = [n for n in names if n in wanted]
    facts = facts_markdown()
    started = time.perf_counter()
    runs: list[tuple[str, int, float, str]] = []
    for name in names:
        log.info("benchmark %s ...", name)
        code, seconds, tail = run_one(name, quick=args.quick)
        log.info("benchmark %s: exit %d in %.0f s", name, code, seconds)
        runs.append((name, code, seconds, tail))
    total = time.perf_counter() - started

    given = sys.argv[1:] if argv is None else argv
    command = "make bench" if not given else f".venv/bin/python -m benchmarks.run {' '.join(given)}"
    lines = [
        "# Benchmark results",
        "",
        f"Rewritten by `{command}` (`python -m benchmarks.run`): every `benchmarks/bench_*.py` "
        "in its own process; the soak (`make soak`) is opt-in and only included from its last run.",
        "",
        facts,
        f"- load at the end: {load_average()[0]:.2f} (1 min); total time {total / 60:.1f} min"
        + (" (quick mode: smoke figures, not for quoting)" if args.quick else ""),
        "",
        "| benchmark | exit | seconds |",
        "|---|---|---|",
        *[f"| {n} | {'ok' if c == 0 else f'FAILED ({c})'} | {s:.0f} |" for n, c, s, _ in runs],
    ]
    for name, code, _, tail in runs:
        lines += ["", "---", ""]
        body = section(name)
        if code != 0:
            lines += [f"## {name}: FAILED (exit {code})", "", "```", tail.strip(), "```"]
            if body:
                lines += ["", "Previous result:", "", body]
        else:
            lines.append(body or f"## {name}\n\n(no results/{name}.md written)")
    for name, origin in EXTRA_SECTIONS:
        body = section(name)
        if body:
            lines += ["", "---", "", f"<!-- {name}: {origin} -->", body]
    RESULTS_FILE.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    log.info("wrote %s in %.1f min", RESULTS_FILE.relative_to(REPO), total / 60)
    return 0 if all(code == 0 for _, code, _, _ in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
