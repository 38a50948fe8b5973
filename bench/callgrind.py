"""Count the CPU instructions one request costs, W0-W3, with valgrind's callgrind.

Wall-clock benchmarks on a shared machine move by 10-30 % from one run to the
next; an instruction count does not. This script serves N requests of each
workload in process (a WSGI call straight into the app, no HTTP server) under
``valgrind --tool=callgrind`` and divides the instructions of that stretch by N.
Run it before and after a change to measure the change alone.

For each database and target (authserver and/or the reference app) it:

1. prepares and seeds a fresh database exactly as bench/run.py does (fewer users);
2. runs the requests once more without valgrind, with libpq tracing on, to count
   SQL statements and, on PostgreSQL, client/server round trips per request (a
   round trip costs the database's CPU and the wait, which no instruction count
   of the Python process shows);
3. runs them under callgrind: the process calls ``os.getppid()`` between phases
   and ``--dump-before=getppid`` writes one profile per phase, so start-up and
   the warm-up requests (query compilation, pool connects) are left out.

Only the Python process is counted: the PostgreSQL backend's work is not.

Usage::

    .venv/bin/python bench/callgrind.py                        # SQLite, both targets
    .venv/bin/python bench/callgrind.py --db both --requests 300
    .venv/bin/python bench/callgrind.py --target authserver --setting LOG_FORMAT=text
    .venv/bin/python bench/callgrind.py --strip _end           # without the after-request hook
    .venv/bin/python bench/callgrind.py --keep                 # keep the profiles
    callgrind_annotate --inclusive=yes <workdir>/<db>-authserver/cg.out.<n> | head -60

Profiles are numbered in phase order: .1 start-up, then for each workload its
warm-up and its measured stretch (.3 is W0, .5 W1, .7 W2, .9 W3 when all four run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKLOADS = ("W0", "W1", "W2", "W3")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/authserver_callgrind"


# Outer process: prepare, run twice, report ------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="bench/callgrind.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("AUTHSERVER_CALLGRIND_PG_URL") or DEFAULT_PG_URL,
        help="PostgreSQL database (WIPED; the reference gets <name>_reference)",
    )
    parser.add_argument("--target", choices=["authserver", "reference", "both"], default="both")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per workload")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests first")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra AUTHSERVER_<KEY> for the app (repeatable)",
    )
    parser.add_argument(
        "--strip",
        default="",
        help="comma-separated names of before/after-request hooks to remove from "
        "authserver's app (e.g. _begin,_end), to measure what each costs",
    )
    parser.add_argument("--no-valgrind", action="store_true", help="only count statements")
    parser.add_argument("--workdir", type=Path, help="where to keep databases and profiles")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    args.workloads = [w for w in WORKLOADS if w in args.workloads.upper().split(",")]
    if not args.workloads:
        parser.error("--workloads: none of " + ",".join(WORKLOADS))
    if args.requests < 1 or args.warmup < 1:
        parser.error("--requests and --warmup must be at least 1")
    return args


def log_step(message: str) -> None:
    """Progress goes to stderr."""
    print(f"[callgrind {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare_authserver(
    url: str, folder: Path, args: argparse.Namespace, settings: dict[str, str]
) -> dict[str, Any]:
    """Migrate and seed authserver's database; return the inner run's plan."""
    from bench import seeding
    from bench import server as servers

    env = servers.server_env(url, folder / "instance", 8000, settings)
    # The migrations of this checkout (see --help: a copy of bench/ in another
    # checkout measures that checkout's code).
    env["PYTHONPATH"] = str(ROOT)
    seeding.cli(env, "db", "upgrade")
    with seeding.app_context(env):
        accounts = seeding.seed_accounts(args.users)
        refresh = (
            seeding.refresh_tokens(accounts, args.warmup + args.requests, via="bulk")
            if "W3" in args.workloads
            else []
        )
    seeding.settle(url)
    # `authserver serve` counts metrics in a multiprocess folder; so does this run.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder / "metrics")
    (folder / "metrics").mkdir(exist_ok=True)
    return {
        "target": "authserver",
        "env": env,
        "access": accounts.access_tokens,
        "refresh": refresh,
        "client_id": accounts.client_id,
        "client_secret": accounts.client_secret,
        "rs_id": accounts.rs_id,
        "rs_secret": accounts.rs_secret,
    }


def prepare_reference(
    url: str, authserver_plan: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Create and seed the reference's database; return its plan (same secrets)."""
    from sqlalchemy import create_engine

    from bench import seeding
    from bench.reference import schema

    engine = create_engine(url)
    try:
        schema.create(engine)
        user_ids, access = schema.seed_users(engine, args.users)
        refresh = (
            schema.seed_refresh_tokens(engine, user_ids, args.warmup + args.requests)
            if "W3" in args.workloads
            else []
        )
    finally:
        engine.dispose()
    seeding.settle(url)
    plan = dict(authserver_plan, target="reference", access=access, refresh=refresh)
    plan["env"] = {
        "REFERENCE_DATABASE_URL": url,
        "REFERENCE_ISSUER": "http://127.0.0.1:8000",
        "REFERENCE_RS_ID": plan["rs_id"],
        "REFERENCE_RS_DIGEST": schema.digest(plan["rs_secret"]),
        "REFERENCE_CLIENT_ID": plan["client_id"],
        "REFERENCE_CLIENT_DIGEST": schema.digest(plan["client_secret"]),
    }
    return plan


def run_inner(
    plan_path: Path, out: Path, args: argparse.Namespace, *, valgrind: bool
) -> dict[str, Any]:
    """Run the inner process (under callgrind or not); return what it reported."""
    plan = json.loads(plan_path.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "REFERENCE_"))}
    env.update(plan["env"])
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts, hence the same counts, every run
    env["PYTHONPATH"] = str(ROOT)
    inner = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--inner",
        str(plan_path),
        str(out / ("phases-vg.json" if valgrind else "phases.json")),
    ]
    if valgrind:
        for old in out.glob("cg.out*"):
            old.unlink()
        inner = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            f"--callgrind-out-file={out / 'cg.out'}",
            f"--log-file={out / 'valgrind.log'}",
            *inner,
        ]
    with open(out / ("app-vg.log" if valgrind else "app.log"), "wb") as app_log:
        result = subprocess.run(  # noqa: S603 - our own interpreter and script
            inner, env=env, stdout=subprocess.PIPE, stderr=app_log, timeout=3600, check=False
        )
    if result.returncode != 0:
        raise SystemExit(f"inner run failed ({result.returncode}); see {out}")
    report: dict[str, Any] = json.loads(
        (out / ("phases-vg.json" if valgrind else "phases.json")).read_text()
    )
    if valgrind:
        report["instructions"] = dump_totals(out, len(report["phases"]))
    return report


def dump_totals(out: Path, phases: int) -> list[int]:
    """Return the instruction total of each phase's profile (.1 start-up, .2 ...)."""
    totals = []
    for n in range(1, phases + 1):
        text = (out / f"cg.out.{n}").read_text(errors="replace")
        found = re.search(r"^totals:\s+(\d+)", text, re.MULTILINE) or re.search(
            r"^summary:\s+(\d+)", text, re.MULTILINE
        )
        if found is None:
            raise SystemExit(f"no totals in {out / f'cg.out.{n}'}")
        totals.append(int(found.group(1)))
    if (out / f"cg.out.{phases + 1}").exists():
        # The app itself called getppid(): the phases and profiles no longer line up.
        raise SystemExit("more profiles than phases: something else calls getppid()")
    return totals


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Prepare every database and target, run them, return one row per workload."""
    from bench import seeding
    from bench.run import reference_pg_url

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="authserver-callgrind-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    settings = {}
    for item in args.setting:
        key, _, value = item.partition("=")
        settings[key.upper().removeprefix("AUTHSERVER_")] = value
    rows: list[dict[str, Any]] = []
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    targets = ["authserver", "reference"] if args.target == "both" else [args.target]
    try:
        for db in dbs:
            folder = workdir / db
            folder.mkdir(exist_ok=True)
            if db == "postgresql":
                url, ref_url = args.pg_url, reference_pg_url(args.pg_url)
                seeding.reset_postgres(url)
                seeding.reset_postgres(ref_url)
            else:
                for old in folder.glob("*.db*"):
                    old.unlink()
                url = "sqlite:///" + str(folder / "bench.db")
                ref_url = "sqlite:///" + str(folder / "reference.db")
            log_step(f"{db}: seeding")
            plan = prepare_authserver(url, folder, args, settings)
            plans = {"authserver": plan}
            if "reference" in targets:
                plans["reference"] = prepare_reference(ref_url, plan, args)
            for target in targets:
                out = workdir / f"{db}-{target}"
                out.mkdir(exist_ok=True)
                plan_path = out / "plan.json"
                plan_path.write_text(
                    json.dumps(
                        {
                            **plans[target],
                            "workloads": args.workloads,
                            "requests": args.requests,
                            "warmup": args.warmup,
                            "strip": [s for s in args.strip.split(",") if s],
                        }
                    )
                )
                log_step(f"{db} {target}: counting statements and timing (no valgrind)")
                counted = run_inner(plan_path, out, args, valgrind=False)
                instructions = None
                if not args.no_valgrind:
                    if "W3" in args.workloads:
                        # The first pass used the refresh tokens up: reseed for this pass.
                        plan_path.write_text(
                            json.dumps(reseed_refresh(plans, target, url, ref_url, args, plan_path))
                        )
                    log_step(f"{db} {target}: under callgrind")
                    instructions = run_inner(plan_path, out, args, valgrind=True)
                rows += rows_of(db, target, counted, instructions, args.requests)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log_step(f"work dir kept: {workdir}")
    return rows


def reseed_refresh(
    plans: dict[str, Any],
    target: str,
    url: str,
    ref_url: str,
    args: argparse.Namespace,
    plan_path: Path,
) -> dict[str, Any]:
    """Return the plan with fresh W3 refresh tokens (the previous pass used its own)."""
    from sqlalchemy import create_engine
    from sqlalchemy import select

    from bench import seeding

    plan = json.loads(plan_path.read_text())
    count = args.warmup + args.requests
    if target == "reference":
        from bench.reference import schema

        engine = create_engine(ref_url)
        try:
            user_ids = list(engine.connect().execute(select(schema.users.c.id)).scalars())
            plan["refresh"] = schema.seed_refresh_tokens(engine, user_ids, count)
        finally:
            engine.dispose()
        return plan
    with seeding.app_context(plans["authserver"]["env"]) as app:
        from authserver.database import db
        from authserver.models import OAuth2Client
        from authserver.models import User

        client_pk = db.session.scalar(
            select(OAuth2Client.id).where(OAuth2Client.client_id == plan["client_id"])
        )
        accounts = seeding.Accounts(
            plan["client_id"],
            plan["client_secret"],
            plan["rs_id"],
            plan["rs_secret"],
            client_pk=int(client_pk or 0),
            user_ids=list(db.session.scalars(select(User.id).order_by(User.id))),
        )
        del app
        plan["refresh"] = seeding.refresh_tokens(accounts, count, via="bulk")
    return plan


def rows_of(
    db: str,
    target: str,
    counted: dict[str, Any],
    valgrind: dict[str, Any] | None,
    requests: int,
) -> list[dict[str, Any]]:
    """Turn the two inner reports into one row per workload."""
    rows = []
    phases = counted["phases"]
    for i, phase in enumerate(phases):
        if phase["name"].endswith("warmup") or phase["name"] == "start-up":
            continue
        row = {
            "db": db,
            "target": target,
            "workload": phase["name"],
            "statements": phase["statements"] / requests,
            "round_trips": phase["round_trips"] / requests if db == "postgresql" else None,
            "wall_us": phase["seconds"] / requests * 1e6,
            "non2xx": phase["non2xx"],
            "instructions": None,
        }
        if valgrind is not None:
            row["instructions"] = valgrind["instructions"][i] / requests
            row["non2xx"] += valgrind["phases"][i]["non2xx"]
        rows.append(row)
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    """Print the results as a table, with authserver/reference instruction ratios."""
    ref = {
        (r["db"], r["workload"]): r["instructions"]
        for r in rows
        if r["target"] == "reference" and r["instructions"]
    }
    header = [
        "db",
        "target",
        "workload",
        "instr/request",
        "vs reference",
        "statements",
        "round trips",
        "wall µs (noisy)",
        "non-2xx",
    ]
    lines = [header]
    for r in rows:
        base = ref.get((r["db"], r["workload"]))
        lines.append(
            [
                r["db"],
                r["target"],
                r["workload"],
                f"{r['instructions']:,.0f}" if r["instructions"] else "-",
                f"{r['instructions'] / base:.2f}x" if r["instructions"] and base else "-",
                f"{r['statements']:.2f}",
                f"{r['round_trips']:.2f}" if r["round_trips"] is not None else "-",
                f"{r['wall_us']:,.0f}",
                str(r["non2xx"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    """Measure and print; return the exit code (1 when any request failed)."""
    args = parse_args(argv)
    if not args.no_valgrind and shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: sudo apt-get install valgrind")
    rows = measure(args)
    print_rows(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any(r["non2xx"] for r in rows) else 0


# Inner process: build the app, serve the requests, mark the phases ------------------


def build_app(plan: dict[str, Any]) -> Any:
    """Return the WSGI app of the plan's target, built like its gunicorn worker's."""
    if plan["target"] == "reference":
        from bench.reference.app import create_app as create_reference

        return create_reference()
    from datetime import timedelta

    from authserver import create_app
    from authserver.services import clients

    # A secret's last use is written once a minute; under valgrind a phase lasts
    # minutes, so that write would land in some phases and not others. In production
    # it is spread over a minute of calls: leave it out of the count.
    clients.LAST_USED_RESOLUTION = timedelta(days=1)
    app = create_app(cli=False)
    for funcs in (app.before_request_funcs, app.after_request_funcs):
        for key, hooks in funcs.items():
            funcs[key] = [h for h in hooks if h.__name__ not in plan["strip"]]
    return app


def environs(plan: dict[str, Any], workload: str, count: int, offset: int) -> list[dict[str, Any]]:
    """Build the WSGI environs of ``count`` requests up front (outside the measure)."""
    import base64

    from werkzeug.test import EnvironBuilder

    basic = "Basic " + base64.b64encode(f"{plan['rs_id']}:{plan['rs_secret']}".encode()).decode()
    access = plan["access"]
    built = []
    for i in range(count):
        if workload == "W0":
            builder = EnvironBuilder(path="/healthz")
        elif workload == "W1":
            builder = EnvironBuilder(
                path="/oauth/introspect",
                method="POST",
                headers={"Authorization": basic},
                data={"token": access[(offset + i) % len(access)]},
            )
        elif workload == "W2":
            builder = EnvironBuilder(
                path="/ifttt/v1/user/info",
                headers={"Authorization": "Bearer " + access[(offset + i) % len(access)]},
            )
        else:
            builder = EnvironBuilder(
                path="/oauth/token",
                method="POST",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": plan["refresh"][offset + i],
                    "client_id": plan["client_id"],
                    "client_secret": plan["client_secret"],
                },
            )
        environ = builder.get_environ()
        environ["REMOTE_ADDR"] = "127.0.0.1"
        built.append(environ)
    return built


class Counter:
    """Count SQL statements (engine events) and PostgreSQL round trips (libpq trace)."""

    def __init__(self, trace_path: Path) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.statements = 0
        self.trace = open(trace_path, "w")  # noqa: SIM115 - lives as long as the process

        @event.listens_for(Engine, "before_cursor_execute")
        def _statement(*_: Any) -> None:
            self.statements += 1

        @event.listens_for(Engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            pgconn = getattr(dbapi_connection, "pgconn", None)
            if pgconn is not None:
                from psycopg.pq import Trace

                pgconn.trace(self.trace.fileno())
                pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def round_trips(self) -> int:
        """Return the round trips so far: one ReadyForQuery from the server each."""
        self.trace.flush()
        with open(self.trace.name, errors="replace") as handle:
            return sum(1 for line in handle if line.startswith("B\t5\tReadyForQuery"))


def inner_main(plan_path: Path, out_path: Path) -> int:
    """Serve the plan's requests phase by phase and write the phase report."""
    plan = json.loads(plan_path.read_text())
    # Counting would add its own instructions: the callgrind pass does not count.
    counter = None if _under_valgrind() else Counter(out_path.with_name("pq-trace.txt"))
    app = build_app(plan)
    batches = []
    for name in plan["workloads"]:
        warm = environs(plan, name, plan["warmup"], 0)
        measured = environs(plan, name, plan["requests"], plan["warmup"])
        batches += [(f"{name} warmup", warm), (name, measured)]
    phases = [{"name": "start-up", "statements": 0, "round_trips": 0, "seconds": 0, "non2xx": 0}]
    os.getppid()  # end of start-up: callgrind dumps here (--dump-before=getppid)
    for name, batch in batches:
        before = (counter.statements, counter.round_trips()) if counter else (0, 0)
        started = time.perf_counter()
        failed = serve(app, batch)
        seconds = time.perf_counter() - started
        os.getppid()  # end of the phase: its profile is dumped
        after = (counter.statements, counter.round_trips()) if counter else (0, 0)
        phases.append(
            {
                "name": name,
                "statements": after[0] - before[0],
                "round_trips": after[1] - before[1],
                "seconds": seconds,
                "non2xx": failed,
            }
        )
    out_path.write_text(json.dumps({"phases": phases}))
    return 0


def _under_valgrind() -> bool:
    return any("vgpreload" in line for line in Path("/proc/self/maps").read_text().splitlines())


def serve(app: Any, batch: list[dict[str, Any]]) -> int:
    """Call the app once per environ, read each body; return the non-2xx count."""
    failed = 0
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return None

    for environ in batch:
        body = app(environ, start_response)
        try:
            b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        if not statuses[-1].startswith("2"):
            failed += 1
    return failed


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--inner":
        sys.exit(inner_main(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit(main())
