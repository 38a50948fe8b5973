"""The workloads and the wrk runs that drive them.

wrk runs on loopback with bench/wrk/workloads.lua, which builds each request
from a token file and prints one ``BENCH_RESULT {json}`` line at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import quote

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "workloads.lua"
APT_HINT = "sudo apt-get install wrk"


@dataclass(frozen=True)
class Workload:
    """One benchmarked request type."""

    name: str
    title: str
    #: Which seeded material the requests carry: None, "access", "refresh" or "code".
    material: str | None
    #: True when each token may be sent only once (the server consumes it).
    single_use: bool = False


WORKLOADS = {
    w.name: w
    for w in (
        Workload("W0", "GET /healthz", None),
        Workload("W1", "POST /oauth/introspect", "access"),
        Workload("W2", "GET /ifttt/v1/user/info", "access"),
        Workload("W3", "POST /oauth/token refresh_token", "refresh", single_use=True),
        Workload("W4", "POST /oauth/token authorization_code", "code", single_use=True),
    )
}


def wrk_path() -> str:
    """Return the wrk executable, or exit with how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            f"bench: wrk is not installed (the load generator). Install it with: {APT_HINT}"
        )
    return found


def wrk_version() -> str:
    """Return wrk's version line (``wrk -v`` prints it and exits 1)."""
    result = subprocess.run(  # noqa: S603 - our own wrk path and fixed arguments
        [wrk_path(), "-v"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "?"


@dataclass(frozen=True)
class LoadSettings:
    """How hard to push: wrk threads and connections, seconds per round."""

    threads: int
    connections: int
    duration: int


@dataclass(frozen=True)
class Credentials:
    """What the Lua script needs besides the tokens (already encoded for the wire)."""

    client_id: str
    client_secret: str
    rs_id: str
    rs_secret: str
    redirect_uri: str

    def env(self) -> dict[str, str]:
        """Return the BENCH_* variables the Lua script reads."""
        basic = base64.b64encode(f"{self.rs_id}:{self.rs_secret}".encode()).decode()
        return {
            "BENCH_BASIC": "Basic " + basic,
            "BENCH_CLIENT_FORM": f"client_id={quote(self.client_id, safe='')}"
            f"&client_secret={quote(self.client_secret, safe='')}",
            "BENCH_REDIRECT": quote(self.redirect_uri, safe=""),
        }


@dataclass
class RoundResult:
    """What one wrk run of one workload measured."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    tokens_used: int
    exhausted: bool

    @property
    def rate(self) -> float:
        """Requests per second over the whole run."""
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class WorkloadResult:
    """All rounds of one workload on one database; the reported values are medians."""

    db: str
    workload: Workload
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Median requests per second over the rounds."""
        return statistics.median(r.rate for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        """Median of the rounds' median latencies."""
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        """Median of the rounds' 99th-percentile latencies."""
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def non2xx(self) -> int:
        """Non-2xx responses over all rounds (any is a finding)."""
        return sum(r.non2xx for r in self.rounds)

    @property
    def exhausted(self) -> bool:
        """True when some round ran out of single-use tokens (its rate is too low)."""
        return any(r.exhausted for r in self.rounds)

    def notes(self) -> str:
        """Non-2xx statuses, socket errors and the per-round rates, in one cell."""
        statuses: dict[str, int] = {}
        errors: dict[str, int] = {}
        for r in self.rounds:
            for key, n in r.statuses.items():
                statuses[key] = statuses.get(key, 0) + n
            for key, n in r.socket_errors.items():
                errors[key] = errors.get(key, 0) + n
        parts = []
        if statuses:
            parts.append("status " + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())))
        if errors:
            parts.append("socket " + ", ".join(f"{k} x{v}" for k, v in sorted(errors.items())))
        if len(self.rounds) > 1:
            parts.append("rounds " + " / ".join(f"{r.rate:.0f}" for r in self.rounds))
        return "; ".join(parts)


def run_wrk(
    base_url: str,
    workload: Workload,
    tokens: Path | None,
    load: LoadSettings,
    credentials: Credentials,
    *,
    duration: int | None = None,
) -> RoundResult:
    """Run wrk once against ``base_url`` and return its parsed report."""
    seconds = duration if duration is not None else load.duration
    env = dict(os.environ)
    env.update(credentials.env())
    env.update(
        {
            "BENCH_WORKLOAD": workload.name,
            "BENCH_TOKENS": str(tokens) if tokens is not None else "",
            "BENCH_SINGLE_USE": "1" if workload.single_use else "0",
            "BENCH_THREADS": str(load.threads),
        }
    )
    argv = [
        wrk_path(),
        "--threads",
        str(load.threads),
        "--connections",
        str(load.connections),
        "--duration",
        f"{seconds}s",
        # Generous, so a slow response is measured as latency, not dropped as a timeout.
        "--timeout",
        "10s",
        "--script",
        str(LUA_SCRIPT),
        base_url + "/",
    ]
    result = subprocess.run(  # noqa: S603 - argv built here from the workload table
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(
            f"wrk failed for {workload.name} (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    report: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    # wrk's errors.status counts responses >= 400 only; the Lua response() hook counts
    # every non-2xx itself, so only the socket-level errors are taken from wrk.
    errors = {k: int(v) for k, v in report["errors"].items() if k != "status" and v}
    return RoundResult(
        requests=int(report["requests"]),
        duration_s=report["duration_us"] / 1e6,
        p50_ms=report["latency_us"]["p50"] / 1000,
        p99_ms=report["latency_us"]["p99"] / 1000,
        non2xx=int(report["non2xx"]),
        statuses={str(k): int(v) for k, v in report["statuses"].items()},
        socket_errors=errors,
        tokens_used=int(report["tokens_used"]),
        exhausted=bool(report["exhausted"]),
    )


def write_tokens(path: Path, tokens: list[str]) -> Path:
    """Write one token per line for the Lua script."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in tokens))
    return path
