"""Describe the machine and versions, and render the results as text and Markdown."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench.loadgen import WorkloadResult
from bench.server import LogSummary

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

# Written only when docs/performance.md does not exist yet; after that the text
# outside the markers belongs to people and is never touched.
INTRO = """\
# Performance

Hand-written notes (targets, profiles, conclusions) go outside the bench markers
below: `make bench` regenerates only the part between them.

## Targets

From the performance issue; all with rate limits on and 16 connections, on the
2-core reference machine:

| what | SQLite | PostgreSQL |
|---|---|---|
| W1 introspection, W2 user info | ≥ 2,600 req/s | ≥ 1,600 req/s |
| W1/W2 p99 latency | ≤ 20 ms | ≤ 20 ms |
| W3 refresh | ≥ 700 req/s | ≥ 700 req/s |
| W4 code exchange | ≥ 500 req/s | ≥ 500 req/s |
| non-2xx responses | 0 | 0 |
| peak RSS per worker | ≤ 80 MB | ≤ 80 MB |

## Notes

(Profiles and findings go here.)

"""

HOW_TO_READ = """\
### How to read this

- Server, database and wrk share the same few cores: every request costs CPU
  on both sides of the loopback, and PostgreSQL competes for the same cores.
  The absolute numbers say little about a bigger machine; compare ratios within
  one run (W1 against W0, PostgreSQL against SQLite, before against after a change).
- "Against the reference" divides authserver's rate by the reference app's
  (bench/reference: Flask + SQLAlchemy Core doing the least each workload needs)
  measured in the same run, rounds alternating between the two servers; the issue's
  targets are ≥ 0.85x on W0-W3, a p99 at most 2x the reference's and no non-2xx.
  A ratio is far steadier than an absolute rate on a shared machine.
- W0 (`/healthz`, no database) is the ceiling of the framework and server
  settings; a workload close to W0 is limited by the stack, not by its own code.
- Each value is the median of the rounds; "rounds" in the notes shows the spread.
  A large spread means the machine was busy with something else.
- Any non-2xx is a finding, not noise: the notes name the statuses, and the
  "Server log" section names the routes and messages.
- "exhausted" means wrk ran out of single-use refresh tokens or codes and
  stopped a thread early, so that rate is too low: raise `--max-rate`.
- Rate limits are on with in-memory counters, i.e. each gunicorn worker counts
  on its own (a deployment with Redis shares them).
- Peak RSS is VmHWM, the most memory each process ever had resident (read after
  the load, so it includes start-up peaks); "RSS after the run" is VmRSS at that
  moment. Workers fork from the master, so part of both is shared pages.
- `authserver tokens purge` keeps the token tables bounded in production (dead
  families, used codes and expired replay ciphertexts go); the scaling run shows
  what happens when they are not.
"""


# What was measured -------------------------------------------------------------


@dataclass
class ScaleRow:
    """W1/W3 rates with ``added`` extra token families in the database."""

    added: int
    rows: dict[str, int]
    results: dict[str, WorkloadResult]


@dataclass
class DatabaseRun:
    """Everything measured on one database."""

    label: str
    url_shown: str
    results: list[WorkloadResult] = field(default_factory=list)
    memory: list[tuple[str, int, float, float]] = field(default_factory=list)
    #: The reference app's results and memory, measured in the same run.
    reference: list[WorkloadResult] = field(default_factory=list)
    reference_memory: list[tuple[str, int, float, float]] = field(default_factory=list)
    reference_log: LogSummary | None = None
    #: authserver under a second server mode (--also-server): its name and results.
    also: tuple[str, list[WorkloadResult]] | None = None
    also_memory: list[tuple[str, int, float, float]] = field(default_factory=list)

    def servers(self) -> list[tuple[str, list[WorkloadResult]]]:
        """Return (server label, results) for authserver, any second mode, the reference."""
        found = [("authserver", self.results)]
        if self.also is not None:
            found.append((f"authserver ({self.also[0]})", self.also[1]))
        return [*found, ("reference", self.reference)]

    scaling: list[ScaleRow] = field(default_factory=list)
    purge: str = ""
    server_version: str | None = None
    seed_seconds: float = 0.0
    log: LogSummary | None = None


def fmt_rate(value: float) -> str:
    """Format requests per second (no decimals: the noise is bigger)."""
    return f"{value:,.0f}"


def result_rows(runs: list[DatabaseRun]) -> list[list[str]]:
    """One row per database, server and workload."""
    return [
        [
            run.label,
            server,
            f"{r.workload.name} {r.workload.title}",
            fmt_rate(r.rate),
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            str(r.non2xx),
            "YES" if r.exhausted else "no",
            r.notes(),
        ]
        for run in runs
        for server, results in run.servers()
        for r in results
    ]


RESULT_HEADER = [
    "db",
    "server",
    "workload",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "exhausted",
    "notes",
]
RATIO_HEADER = [
    "db",
    "workload",
    "authserver req/s",
    "reference req/s",
    "authserver/reference",
    "authserver p99 ms",
    "reference p99 ms",
    "p99 ratio",
    "targets (≥ 0.85x, p99 ≤ 2x, 0 non-2xx)",
]
MEMORY_HEADER = [
    "db",
    "server",
    "process",
    "pid",
    "peak RSS MiB (VmHWM)",
    "RSS after the run MiB",
]
SCALE_HEADER = [
    "db",
    "workload",
    "families added",
    "token rows (access/refresh)",
    "req/s",
    "vs base",
    "p99 ms",
    "non-2xx",
    "flag",
]
#: The issue's targets: throughput at least this share of the reference's ...
RATIO_TARGET = 0.85
#: ... and a p99 at most this multiple of the reference's.
P99_TARGET = 2.0


def ratio_rows(runs: list[DatabaseRun]) -> list[list[str]]:
    """One row per workload both servers ran: authserver over the reference."""
    rows = []
    for run in runs:
        reference = {r.workload.name: r for r in run.reference}
        mine_all = [(server, r) for server, results in run.servers()[:-1] for r in results]
        for server, mine in mine_all:
            ref = reference.get(mine.workload.name)
            if ref is None:
                continue
            ratio = mine.rate / ref.rate if ref.rate else 0.0
            p99_ratio = mine.p99_ms / ref.p99_ms if ref.p99_ms else 0.0
            met = (
                ratio >= RATIO_TARGET
                and p99_ratio <= P99_TARGET
                and mine.non2xx == 0
                and ref.non2xx == 0
            )
            rows.append(
                [
                    run.label if server == "authserver" else f"{run.label}, {server}",
                    f"{mine.workload.name} {mine.workload.title}",
                    fmt_rate(mine.rate),
                    fmt_rate(ref.rate),
                    f"{ratio:.2f}",
                    f"{mine.p99_ms:.1f}",
                    f"{ref.p99_ms:.1f}",
                    f"{p99_ratio:.2f}",
                    "met" if met else "NOT MET",
                ]
            )
    return rows


def memory_rows(runs: list[DatabaseRun]) -> list[list[str]]:
    """One row per server process."""
    return [
        [run.label, server, role, str(pid), f"{peak:.1f}", f"{now:.1f}"]
        for run in runs
        for server, memory in (
            ("authserver", run.memory),
            (f"authserver ({run.also[0]})" if run.also else "", run.also_memory),
            ("reference", run.reference_memory),
        )
        for role, pid, peak, now in memory
    ]


def scale_rows(runs: list[DatabaseRun]) -> list[list[str]]:
    """W1/W3 at each fill level, relative to the base run; drops over 15% flagged."""
    rows = []
    for run in runs:
        if not run.scaling:
            continue
        base = run.scaling[0].results
        for step in run.scaling:
            for name, result in step.results.items():
                ratio = result.rate / base[name].rate if base[name].rate else 0.0
                rows.append(
                    [
                        run.label,
                        name,
                        f"+{step.added:,}",
                        f"{step.rows.get('access_tokens', 0):,} / "
                        f"{step.rows.get('refresh_tokens', 0):,}",
                        fmt_rate(result.rate),
                        f"{ratio:.2f}",
                        f"{result.p99_ms:.1f}",
                        str(result.non2xx),
                        "DROP >15%" if ratio < 0.85 else ("exhausted" if result.exhausted else ""),
                    ]
                )
    return rows


def markdown(
    *,
    command: str,
    started: datetime,
    machine: dict[str, str],
    versions: dict[str, str],
    settings: dict[str, str],
    runs: list[DatabaseRun],
) -> str:
    """Render the generated section of the performance document."""
    parts = [
        "## Latest `make bench` run",
        f"Command: `{command}`"
        + (" (through `make bench`)" if os.environ.get("MAKELEVEL") else "")
        + "  \n"
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        "### Machine",
        md_pairs(machine),
        "### Versions",
        md_pairs(versions),
        "### Settings",
        md_pairs(settings),
        "### Against the reference",
        md_table(RATIO_HEADER, ratio_rows(runs))
        if any(run.reference for run in runs)
        else "The reference app was not run (--no-reference).",
        "### Results",
        md_table(RESULT_HEADER, result_rows(runs)),
        "### Memory",
        md_table(MEMORY_HEADER, memory_rows(runs)),
    ]
    if any(run.scaling for run in runs):
        parts += ["### Scaling", md_table(SCALE_HEADER, scale_rows(runs))]
        parts += [run.purge for run in runs if run.purge]
    log_lines = [f"- {line}" for line in log_findings(runs)]
    parts += [
        "### Server log",
        "\n".join(log_lines)
        if log_lines
        else "No warnings, errors or non-2xx responses in the server logs.",
    ]
    parts.append(HOW_TO_READ)
    return "\n\n".join(parts)


def text_report(runs: list[DatabaseRun]) -> str:
    """Render the results for the terminal."""
    parts = [
        text_table(RESULT_HEADER, result_rows(runs)),
        text_table(MEMORY_HEADER, memory_rows(runs)),
    ]
    if any(run.reference for run in runs):
        parts.insert(0, text_table(RATIO_HEADER, ratio_rows(runs)))
    if any(run.scaling for run in runs):
        parts.append(text_table(SCALE_HEADER, scale_rows(runs)))
        parts += [run.purge for run in runs if run.purge]
    parts += log_findings(runs)
    return "\n\n".join(parts)


def log_findings(runs: list[DatabaseRun]) -> list[str]:
    """Return what the servers' logs hold beyond routine lines, one line each."""
    return [
        f"{run.label} {server}: {line}"
        for run in runs
        for server, log in (("authserver", run.log), ("reference", run.reference_log))
        if log
        for line in log.lines()
    ]


# Machine, versions and rendering ---------------------------------------------------


def machine() -> dict[str, str]:
    """Return CPU count and model, memory, kernel and load, as shown in the report."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    return {
        "CPUs (nproc)": str(usable),
        "CPU model": model,
        "RAM": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def versions(pg_version: str | None, wrk: str) -> dict[str, str]:
    """Return the versions of everything on the request path."""
    found = {"Python": platform.python_version()}
    for package in ("gunicorn", "Flask", "SQLAlchemy", "Authlib", "psycopg", "Flask-Limiter"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["SQLite library"] = sqlite3.sqlite_version
    found["PostgreSQL server"] = pg_version or "not used"
    found["wrk"] = wrk
    return found


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render an aligned plain-text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table (pipes in cells escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def md_pairs(pairs: dict[str, str]) -> str:
    """Render key/value pairs as a two-column Markdown table."""
    return md_table(["", ""], [[k, v] for k, v in pairs.items()])


def write_section(path: Path, section: str) -> None:
    """Replace the generated part of ``path``, keeping every hand-written line.

    A new file gets the placeholder intro; a file without markers gets the
    section appended, so nothing a person wrote is ever lost.
    """
    block = (
        f"{BEGIN}\n<!-- Generated by bench/run.py: edit outside these markers. -->\n\n"
        f"{section.rstrip()}\n\n{END}\n"
    )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(INTRO + block)
        return
    current = path.read_text()
    start, end = current.find(BEGIN), current.find(END)
    if start == -1 or end < start:
        path.write_text(current.rstrip() + "\n\n" + block)
        return
    path.write_text(current[:start] + block + current[end + len(END) :].lstrip("\n"))


def command_line(argv: Sequence[str]) -> str:
    """Return how this run was started, as a user would type it."""
    import shlex

    return ("python bench/run.py " + shlex.join(argv)).strip()
