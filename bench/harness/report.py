"""The markdown report: what ran where, and one table row per system with ratios to Faust."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.observe import Outcome
from harness.systems import ROOT, System

_PACKAGES = [
    "kafka-dstreams",
    "faust-streaming",
    "mode-streaming",
    "aiokafka",
    "quixstreams",
    "confluent-kafka",
    "redis",
]


_LEGEND = [
    "Columns:",
    "",
    "- *wall s*: from launching the worker process(es) until every input record is reflected: "
    "the group's lag is 0 on the input and the latest count of every word on the output topic "
    "(read with read_committed) equals the expected count. Startup is included.",
    "- *records/s*: N / wall. *vs Faust EOS / ALO*: records/s over that Faust row's, only "
    "between exact answers.",
    "- *first output s*: when the first result was visible to a read_committed reader.",
    "- *output / lag-0 s*: when the output first matched the expected counts / when the "
    "group's committed offsets first reached the end of the input.",
    "- *output records*: results written (per record for Faust and quixstreams, per word and "
    "batch for kafka-dstreams).",
    "- *peak RSS MiB*: the sum over worker processes of each one's kernel-reported peak "
    "(VmHWM). *CPU s*: their user+system time until completion.",
    "- *broker+Redis CPU s*: what the local broker and redis-server spent meanwhile (- when "
    "they were given by the environment); Redis is part of kafka-dstreams' cost.",
    "- *answer*: the final output checked against the expected counts again 3 s after "
    "completion; `exact` also requires that no worker died on the way.",
]


@dataclass
class Row:
    system: System
    outcome: Outcome
    records: int
    load_before: float
    log: Path

    @property
    def throughput(self) -> float | None:
        if not (self.outcome.completed and self.outcome.wall_s):
            return None
        return self.records / self.outcome.wall_s

    @property
    def verdict(self) -> str:
        """``exact`` only for a complete, correct answer from workers that all stayed up."""
        died = self.outcome.died
        if self.outcome.completed and self.outcome.exact and not died:
            return "exact"
        if self.outcome.completed and self.outcome.exact:
            codes = ", ".join(str(c) for c in died)
            total = self.system.processes
            return f"exact, but {len(died)} of {total} processes died (exit {codes})"
        if self.outcome.exact:
            return "exact but incomplete"
        o = self.outcome
        return (
            f"WRONG: {o.words_wrong} words with a wrong count, {o.words_missing} missing, "
            f"{o.overcount} counted too many"
        )


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def versions(kafka: str, redis_server: str, ours_python: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import confluent_kafka

        found["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "service"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    found["kafka-dstreams"] += f" (commit {commit or '?'}{', service/ modified' if dirty else ''})"
    if Path(ours_python).absolute() != Path(sys.executable).absolute():
        probe = "import confluent_kafka as c; print(c.__version__, c.libversion()[0])"
        client = subprocess.run(
            [ours_python, "-c", probe], capture_output=True, text=True, check=False
        ).stdout.split()
        found["kafka-dstreams"] += (
            f", run by {ours_python} with confluent-kafka {' / librdkafka '.join(client)}"
        )
    found["Kafka broker"] = kafka
    found["redis-server"] = redis_server
    return found


def _describe(s: System) -> str:
    procs = "1 process" if s.processes == 1 else f"{s.processes} processes in one group"
    return f"- {s.key}: {s.name}, {s.guarantee} ({s.how}), {procs}"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ratio(row: Row, base: Row | None) -> str:
    if base is None or row.throughput is None or base.throughput is None:
        return "n/a"
    if row.verdict != "exact" or base.verdict != "exact":
        return "n/a"
    return f"{row.throughput / base.throughput:.2f}x"


def shuffle_costs(rows: list[Row]) -> list[str]:
    """What a shuffle through Kafka costs: each shuffled row against its unshuffled twin."""
    by_key = {r.system.key: r for r in rows}
    lines = []
    for plain_key in ("ours", "ours3"):
        plain, shuffled = by_key.get(plain_key), by_key.get(f"{plain_key}-shuffle")
        if plain is None or shuffled is None:
            continue
        ratio = _ratio(shuffled, plain)
        lines.append(
            f"- {shuffled.system.key} vs {plain_key}: {ratio} the records/s, "
            f"CPU {shuffled.outcome.cpu_s:.1f} s vs {plain.outcome.cpu_s:.1f} s, "
            f"peak RSS {shuffled.outcome.peak_rss_bytes / 2**20:,.0f} vs "
            f"{plain.outcome.peak_rss_bytes / 2**20:,.0f} MiB, first output "
            f"{_num(shuffled.outcome.first_output_s)} s vs {_num(plain.outcome.first_output_s)} s"
        )
    return lines


def table(rows: list[Row]) -> str:
    faust_eos = next((r for r in rows if r.system.key == "faust-eos"), None)
    faust_alo = next((r for r in rows if r.system.key == "faust-alo"), None)
    lines = [
        "| row | system | guarantee | procs | wall s | records/s | vs Faust EOS | vs Faust ALO "
        "| first output s | output / lag-0 s | output records | peak RSS MiB | CPU s "
        "| broker+Redis CPU s | answer |",
        "| --- | --- | --- " + "| ---: " * 11 + "| --- |",
    ]
    for r in rows:
        o = r.outcome
        lines.append(
            f"| {r.system.key} | {r.system.name} | {r.system.guarantee} | {r.system.processes} "
            f"| {_num(o.wall_s)} | {_num(r.throughput, '{:,.0f}')} "
            f"| {_ratio(r, faust_eos)} | {_ratio(r, faust_alo)} "
            f"| {_num(o.first_output_s)} | {_num(o.output_s)} / {_num(o.lag0_s)} "
            f"| {o.output_records:,} | {o.peak_rss_bytes / 2**20:,.0f} | {o.cpu_s:.1f} "
            f"| {_num(o.services_cpu_s)} | {r.verdict} |"
        )
    return "\n".join(lines)


def render(
    *,
    title: str,
    command: str,
    workload: dict[str, str],
    machine_info: dict[str, str],
    version_info: dict[str, str],
    rows: list[Row],
    services_origin: str,
) -> str:
    notes = [
        f"- {r.system.name} ({r.system.key}): {r.outcome.note}; log {r.log}"
        for r in rows
        if r.outcome.note or r.verdict != "exact"
    ]
    loads = ", ".join(f"{r.system.key} {r.load_before:.2f}" for r in rows)
    parts = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine_info.items()),
        f"- 1-minute load average when each row started: {loads} (the machine is shared with "
        "other test runs; a load above the core count means the row competed for CPU)",
        f"- Kafka and Redis: {services_origin}, on the same machine (loopback)",
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in version_info.items()),
        "",
        "## Workload",
        "",
        *(f"- {k}: {v}" for k, v in workload.items()),
        "",
        "## Results",
        "",
        table(rows),
        "",
        "Rows:",
        "",
        *(_describe(r.system) for r in rows),
        "",
        *_LEGEND,
    ]
    costs = shuffle_costs(rows)
    if costs:
        parts += ["", "The cost of a shuffle through Kafka (same job, same input):", "", *costs]
    if notes:
        parts += ["", "Notes:", "", *notes]
    return "\n".join(parts) + "\n"
