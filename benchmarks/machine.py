"""Facts about the machine a benchmark ran on (CPU, cores, RAM, load) and its compute peak.

Every result file starts with these, because a number without its machine and its load is
not a fact. The peak figures turn a latency into "how far from the hardware's floor".
"""

from __future__ import annotations

import os
import platform
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class CpuPeak:
    """Multiply-accumulates per cycle per core for fp32 FMA and int8 dot products."""

    family: str
    fp32_macs_per_cycle: int
    int8_macs_per_cycle: int
    assumption: str


def _cpuinfo() -> dict[str, str]:
    facts: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return facts
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            facts.setdefault(key.strip(), value.strip())
    return facts


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform's guess elsewhere)."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown"


def cpu_mhz() -> float:
    """Nominal clock in MHz: what the hypervisor reports, else BogoMIPS / 2."""
    info = _cpuinfo()
    for key, scale in (("cpu MHz", 1.0), ("bogomips", 0.5)):
        try:
            return float(info[key]) * scale
        except (KeyError, ValueError):
            continue
    return 0.0


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx512f, avx512_vnni, ...)."""
    return set(_cpuinfo().get("flags", "").split())


def cpu_peak() -> CpuPeak:
    """Per-core MAC throughput of the vector units, from the CPU family and its flags."""
    info, flags = _cpuinfo(), cpu_flags()
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    if vendor == "AuthenticAMD" and family == "26":
        # Zen 5: two full-width 512-bit FMA pipes; VPDPBUSD on both.
        return CpuPeak(
            "AMD Zen 5", 32, 128, "2x512-bit FMA (32 fp32 MAC) and 2x VNNI (128 int8 MAC)"
        )
    if vendor == "AuthenticAMD" and family == "25" and "avx512f" in flags:
        # Zen 4 executes 512-bit ops as two 256-bit halves.
        return CpuPeak(
            "AMD Zen 4", 16, 64, "2x256-bit FMA (16 fp32 MAC) and 256-bit VNNI (64 int8 MAC)"
        )
    if "avx512f" in flags:
        vnni = 128 if "avx512_vnni" in flags else 64
        return CpuPeak("AVX-512", 32, vnni, "2x512-bit FMA ports; VNNI on both if present")
    if "avx2" in flags:
        return CpuPeak("AVX2", 16, 32, "2x256-bit FMA ports")
    return CpuPeak("unknown", 4, 8, "scalar SSE guess")


def peak_gmacs(*, cores: int, int8: bool) -> float:
    """Peak giga-MACs per second of `cores` cores at the nominal clock."""
    peak = cpu_peak()
    per_cycle = peak.int8_macs_per_cycle if int8 else peak.fp32_macs_per_cycle
    return cores * per_cycle * cpu_mhz() / 1000.0


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages (other engineers' jobs make numbers noisy)."""
    return os.getloadavg()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    VmHWM belongs to the current address space; ru_maxrss would also carry the peak of the
    parent a spawned child was exec'd from.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_facts() -> dict[str, str]:
    """CPU, cores, RAM, OS, time and load, for the head of a result file."""
    load = load_average()
    return {
        "cpu": f"{cpu_model()} ({cpu_peak().family}, {cpu_mhz():.0f} MHz nominal)",
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)",
    }


def facts_markdown(facts: dict[str, str] | None = None) -> str:
    """Machine facts as a markdown bullet list."""
    facts = facts or machine_facts()
    return "\n".join(f"- {key}: {value}" for key, value in facts.items())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    """Writes one benchmark's markdown section to benchmarks/results/<name>.md."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
    return path
