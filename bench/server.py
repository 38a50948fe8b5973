"""Start the server under test, wait for it, stop it, read its memory.

A *server mode* is a function that returns the command line and environment to
start the server; ``SERVER_MODES`` lists them for ``--server``. The reference app
(bench/reference) is started by ``reference_spec`` under the same gunicorn flags.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
SECRET_KEY = "bench-secret-key-" + "1" * 32


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    database_url: str, instance: Path, port: int, settings: dict[str, str]
) -> dict[str, str]:
    """Return the environment of the server (and of the seeding app).

    Rate limits are left at their default (on, memory storage), exactly as a
    deployment without Redis runs; ``settings`` (``--server-setting``) adds or
    overrides AUTHSERVER_* values deliberately.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_SECRET_KEY": SECRET_KEY,
            "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
            "AUTHSERVER_LOG_FORMAT": "json",
            "AUTHSERVER_INSTANCE_PATH": str(instance),
        }
    )
    env.update({"AUTHSERVER_" + key: value for key, value in settings.items()})
    return env


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: its argv and environment."""

    argv: list[str]
    env: dict[str, str]
    description: str
    #: Answers 200 once the server can take the load.
    ready_path: str = "/readyz"


def gunicorn_mode(*, port: int, workers: int, env: dict[str, str]) -> ServerSpec:
    """``authserver serve``: gunicorn sync workers, the production command."""
    argv = [
        AUTHSERVER,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    # The checkout being measured, not whichever one the venv's editable install names.
    env = {**env, "PYTHONPATH": str(ROOT)}
    return ServerSpec(argv, env, f"authserver serve (gunicorn), {workers} workers")


def granian_mode(*, port: int, workers: int, env: dict[str, str]) -> ServerSpec:
    """Granian's WSGI interface, one blocking thread per worker (as sync workers).

    Measured as a candidate replacement for gunicorn (docs/performance.md); needs
    ``pip install granian``. Metrics are counted across workers as under serve.
    """
    import tempfile

    granian = Path(sys.executable).with_name("granian")
    if not granian.exists():
        raise SystemExit("bench: --server granian needs granian: .venv/bin/pip install granian")
    metrics = tempfile.mkdtemp(prefix="authserver-metrics-")
    argv = [
        str(granian),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        "1",
        "--no-ws",
        "authserver.wsgi:app",
    ]
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics, "PYTHONPATH": str(ROOT)}
    return ServerSpec(argv, env, f"granian (WSGI, 1 blocking thread), {workers} workers")


SERVER_MODES: dict[str, Callable[..., ServerSpec]] = {
    "gunicorn": gunicorn_mode,
    "granian": granian_mode,
}

ROOT = Path(__file__).resolve().parent.parent


def reference_spec(*, port: int, workers: int, env: dict[str, str]) -> ServerSpec:
    """Return how to start the reference app, with the gunicorn flags of `authserver serve`."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "30",
        "--graceful-timeout",
        "30",
        "--config",
        "python:bench.reference.gunicorn_conf",
        "bench.reference.wsgi:app",
    ]
    env = {**env, "PYTHONPATH": str(ROOT)}
    return ServerSpec(argv, env, f"reference app (gunicorn), {workers} workers", "/healthz")


@dataclass
class RunningServer:
    """A started server process (the gunicorn master: `serve` execs into it)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def alive(self) -> bool:
        """Tell whether the master is still running."""
        return self.process.poll() is None

    def memory(self) -> list[tuple[str, int, float, float]]:
        """Return (role, pid, peak RSS, current RSS) in MiB for the master and workers."""
        master = self.process.pid
        found = [("master", master, *rss_mib(master))]
        for n, pid in enumerate(sorted(child_pids(master)), 1):
            found.append((f"worker {n}", pid, *rss_mib(pid)))
        return found


def start(spec: ServerSpec, base_url: str, log_path: Path, timeout: float = 60) -> RunningServer:
    """Start the server, stdout and stderr to ``log_path``; wait until it says it is ready."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv built by a server mode above
            spec.argv,
            env=spec.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    server = RunningServer(process, base_url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited early (code {process.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(base_url + spec.ready_path, timeout=2) as response:  # noqa: S310 - our own http URL
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"the server did not become ready in {timeout:.0f} s; see {log_path}")


def rss_mib(pid: int) -> tuple[float, float]:
    """Return a process's peak (VmHWM) and current (VmRSS) resident size in MiB.

    Zeros when /proc cannot be read (the process is gone).
    """
    values = {"VmHWM:": 0.0, "VmRSS:": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(None, 1)[0] if line else ""
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values["VmHWM:"], values["VmRSS:"]


def child_pids(pid: int) -> list[int]:
    """Return the pids whose parent is ``pid`` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the second field after the parenthesised command name
        # (which may itself contain spaces or parentheses, hence the rsplit).
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class LogSummary:
    """What the server logged at WARNING and above, and its non-2xx responses."""

    levels: Counter[str]
    messages: Counter[str]
    statuses: Counter[str]

    def lines(self) -> list[str]:
        """Describe the summary in a few short lines (empty when all was quiet)."""
        out = []
        if self.statuses:
            out.append(
                "non-2xx responses by route: "
                + ", ".join(f"{key} x{n}" for key, n in self.statuses.most_common(8))
            )
        for message, n in self.messages.most_common(5):
            out.append(f"log x{n}: {message}")
        return out


NOTABLE_LINES = 2000


def summarize_log(path: Path, notable: Path | None = None) -> LogSummary:
    """Count warnings, errors and non-2xx request lines in the server's JSON log.

    With ``notable``, also copy up to NOTABLE_LINES of those lines there: the full
    log (one line per request) is large, the interesting part is small.
    """
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    if not path.exists():
        return LogSummary(levels, messages, statuses)
    kept: list[str] = []
    with open(path, errors="replace") as handle:
        for line in handle:
            if _count_line(line, levels, messages, statuses) and len(kept) < NOTABLE_LINES:
                kept.append(line)
    if notable is not None:
        notable.write_text("".join(kept))
    return LogSummary(levels, messages, statuses)


def _count_line(
    line: str, levels: Counter[str], messages: Counter[str], statuses: Counter[str]
) -> bool:
    """Count one log line; tell whether it is notable (a problem of some kind)."""
    try:
        entry = json.loads(line)
    except ValueError:
        # gunicorn's own lines are plain text; its errors (worker timeouts) count too.
        if "[ERROR]" in line or "[CRITICAL]" in line:
            levels["ERROR"] += 1
            messages[line.split("]", 3)[-1].strip()[:160]] += 1
            return True
        return False
    if not isinstance(entry, dict):
        return False
    found = False
    status = entry.get("status")
    if isinstance(status, int) and not 200 <= status < 300:
        statuses[f"{entry.get('method')} {entry.get('route')} {status}"] += 1
        found = True
    level = str(entry.get("level", ""))
    if level in {"WARNING", "ERROR", "CRITICAL"}:
        levels[level] += 1
        # Digits vary per line (family ids, pids); drop them to group alike lines.
        message = "".join(c for c in str(entry.get("message", "")) if not c.isdigit())
        messages[f"{level} {entry.get('logger')}: {message[:160]}"] += 1
        found = True
    return found
