"""Measure a real `authserver serve --workers 2` on SQLite and on PostgreSQL.

Not part of the test suite. For each database it:

1. migrates it with `authserver db upgrade`;
2. arranges a user, a client and a resource server with the CLI, then mints access and
   refresh tokens and authorization codes through the app's own services;
3. starts `authserver serve --workers 2` on a free port (rate limits off);
4. sends a bounded number of requests from a few client threads per endpoint
   (introspection, user info, code exchange, refresh) and records each latency;
5. reads the resident memory (RSS) of the gunicorn master and its workers.

It prints one table; compare ratios within one run (the absolute numbers depend on
the machine and on everything else running on it).

Usage::

    .venv/bin/python bench/run.py                       # SQLite only
    .venv/bin/python bench/run.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

The PostgreSQL database is migrated and gets bench rows (a user and client named
bench-*); point it at a database you own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
AUTHSERVER = str(Path(sys.executable).with_name("authserver"))
REDIRECT = "https://ifttt.com/channels/bench/authorize"
PASSWORD = "bench password " + "x" * 12
SECRET_KEY = "bench-secret-key-" + "1" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(database_url: str, instance: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update({
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_SECRET_KEY": SECRET_KEY,
        "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHSERVER_RATE_LIMITS": "off",
        "AUTHSERVER_LOG_FORMAT": "json",
        "AUTHSERVER_INSTANCE_PATH": str(instance),
    })
    return env


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([AUTHSERVER, *args], env=env, input=stdin, capture_output=True,
                            text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"authserver {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@dataclass
class Fixtures:
    """Everything the load needs, minted before the server starts."""

    client_id: str
    client_secret: str
    rs_id: str
    rs_secret: str
    access_token: str
    codes: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)


def arrange(env: dict[str, str], n_codes: int, n_chains: int) -> Fixtures:
    """Create user/client/resource server with the CLI; codes and tokens in process."""
    cli(env, "db", "upgrade")
    suffix = secrets.token_hex(4)
    username = f"bench-{suffix}"
    cli(env, "users", "create", username, "--name", "Bench User", "--password-stdin",
        stdin=PASSWORD + "\n")
    client = json.loads(cli(env, "clients", "create", f"Bench {suffix}", "--redirect-uri",
                            REDIRECT, "--client-id", f"bench-{suffix}", "--json"))
    shim = json.loads(cli(env, "resource-servers", "create", f"Shim {suffix}", "--json"))
    issued = json.loads(cli(env, "tokens", "issue", "--user", username, "--client",
                            client["client_id"], "--json"))
    fixtures = Fixtures(client["client_id"], client["client_secret"], shim["id"],
                        shim["secret"], issued["access_token"])

    # Codes and extra refresh tokens through the app itself (the CLI has no command
    # for codes, and minting hundreds of families one process at a time is slow).
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from authserver import create_app
        from authserver.security import new_token
        from authserver.services import clients as client_service
        from authserver.services import tokens as token_service
        from authserver.services import users as user_service

        app = create_app()
        logging.getLogger("authserver").setLevel(logging.WARNING)
        with app.app_context():
            user = user_service.require_user(username)
            oauth_client = client_service.require_client(fixtures.client_id)
            for _ in range(n_codes):
                raw = new_token()
                token_service.create_authorization_code(
                    code=raw, oauth_client=oauth_client, user=user, redirect_uri=REDIRECT,
                    scope="ifttt", code_challenge=None, code_challenge_method=None,
                )
                fixtures.codes.append(raw)
            for _ in range(n_chains):
                body = token_service.issue_tokens_for(user, oauth_client, scope=None)
                fixtures.refresh_tokens.append(body["refresh_token"])
            from authserver.database import db

            db.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return fixtures


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(env: dict[str, str], port: int, log_path: Path) -> Server:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [AUTHSERVER, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early; see {log_path}")
        try:
            if requests.get(server.base_url + "/readyz", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"server did not become ready; see {log_path}")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised command) is the parent pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    wall: float

    def row(self) -> list[str]:
        lat = sorted(self.latencies)
        if not lat:
            return [self.name, "0", str(self.errors), "-", "-", "-", "-"]

        def pct(p: float) -> str:
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:.1f}"

        return [self.name, str(len(lat)), str(self.errors),
                f"{len(lat) / self.wall:.0f}", pct(0.50), pct(0.95), pct(0.99)]


def load(name: str, jobs: list[Callable[[requests.Session], requests.Response]],
         threads: int) -> Result:
    """Run the jobs (one request each) from `threads` client threads."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = list(jobs)

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            started = time.perf_counter()
            try:
                ok = job(session).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Result(name, latencies, errors, time.perf_counter() - began)


def measure(label: str, database_url: str, args: argparse.Namespace) -> tuple[list[Result], dict[str, int]]:
    work = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
    port = free_port()
    env = base_env(database_url, work / "instance", port)
    print(f"[{label}] arranging fixtures ...", file=sys.stderr)
    fx = arrange(env, args.codes, args.threads)
    server = start(env, port, work / "server.log")
    try:
        base = server.base_url
        # Warm both workers (imports, connection pools) before measuring.
        for _ in range(20):
            requests.get(base + "/healthz", timeout=10)
        results = []

        def introspect(session: requests.Session) -> requests.Response:
            return session.post(base + "/oauth/introspect", data={"token": fx.access_token},
                                auth=(fx.rs_id, fx.rs_secret), timeout=30)

        def user_info(session: requests.Session) -> requests.Response:
            return session.get(base + "/ifttt/v1/user/info", timeout=30,
                               headers={"Authorization": f"Bearer {fx.access_token}"})

        def exchange(code: str) -> Callable[[requests.Session], requests.Response]:
            return lambda session: session.post(base + "/oauth/token", timeout=30, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": fx.client_id, "client_secret": fx.client_secret})

        results.append(load("introspection", [introspect] * args.requests, args.threads))
        results.append(load("user info", [user_info] * args.requests, args.threads))
        results.append(load("code exchange", [exchange(c) for c in fx.codes], args.threads))

        # Refresh: each thread walks its own rotation chain, as IFTTT does per user.
        chains = {i: token for i, token in enumerate(fx.refresh_tokens)}
        chain_lock = threading.Lock()
        per_thread = args.refreshes // args.threads
        counter = iter(range(10**9))

        def refresh_job(session: requests.Session) -> requests.Response:
            index = getattr(session, "_bench_chain", None)
            if index is None:
                with chain_lock:
                    index = next(counter) % len(fx.refresh_tokens)
                session._bench_chain = index  # type: ignore[attr-defined]
            response = session.post(base + "/oauth/token", timeout=30, data={
                "grant_type": "refresh_token", "refresh_token": chains[index],
                "client_id": fx.client_id, "client_secret": fx.client_secret})
            if response.status_code == 200:
                chains[index] = response.json()["refresh_token"]
            return response

        results.append(load("refresh", [refresh_job] * (per_thread * args.threads),
                            args.threads))
        pid = server.process.pid
        workers = children(pid)
        memory = {"master": rss_kib(pid)}
        for n, worker_pid in enumerate(sorted(workers), 1):
            memory[f"worker {n}"] = rss_kib(worker_pid)
        return results, memory
    finally:
        server.stop()


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=os.environ.get("AUTHSERVER_BENCH_PG_URL", ""),
                        help="PostgreSQL URL of a database you own (omit to skip).")
    parser.add_argument("--threads", type=int, default=4, help="Client threads.")
    parser.add_argument("--requests", type=int, default=600,
                        help="Requests for introspection and for user info.")
    parser.add_argument("--codes", type=int, default=200, help="Code exchanges.")
    parser.add_argument("--refreshes", type=int, default=200, help="Refresh requests.")
    args = parser.parse_args()

    targets = [("sqlite", "sqlite:///" + str(Path(tempfile.mkdtemp()) / "bench.db"))]
    if args.pg_url:
        targets.append(("postgresql", args.pg_url))
    rows, memory_rows = [], []
    for label, url in targets:
        results, memory = measure(label, url, args)
        rows += [[label, *r.row()] for r in results]
        memory_rows.append([label, *(f"{memory[k] / 1024:.0f}" for k in sorted(memory)),
                            f"{sum(memory.values()) / 1024:.0f}"])
        memory_header = ["database", *(f"{k} MiB" for k in sorted(memory)), "total MiB"]
    print(f"\n{args.threads} client threads, server: authserver serve --workers 2, "
          f"rate limits off, load {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows, ["database", "endpoint", "ok", "errors", "req/s", "p50 ms", "p95 ms",
                       "p99 ms"]))
    print()
    print(table(memory_rows, memory_header))


if __name__ == "__main__":
    main()
