"""Benchmark a real `authserver serve` with wrk, on SQLite and/or PostgreSQL.

For each database it:

1. prepares a fresh database (a temp SQLite file; PostgreSQL: the database at
   --pg-url is created if missing and its public schema dropped and recreated)
   and migrates it with `authserver db upgrade`;
2. seeds users, one IFTTT client, one resource server, an access token per user
   and enough single-use refresh tokens and codes for every round (see
   bench/seeding.py for how and why);
3. starts the server (`authserver serve`, gunicorn, 2 workers by default) on a
   free 127.0.0.1 port with the default settings: rate limits on, JSON logs;
4. runs each workload with wrk (bench/wrk/workloads.lua) for --duration seconds,
   --rounds times, and reports the medians:
     W0  GET  /healthz                       framework ceiling, no database
     W1  POST /oauth/introspect              resource server, HTTP Basic
     W2  GET  /ifttt/v1/user/info            Bearer access token
     W3  POST /oauth/token refresh_token     a never-used refresh token each time
     W4  POST /oauth/token authorization_code  a seeded code each time
5. optionally (--scale) adds 10k and 1M token families and re-runs W1 and W3;
6. reads the peak RSS (VmHWM) of the gunicorn master and workers.

Unless --no-reference, it does the same for the reference app (bench/reference:
Flask + SQLAlchemy Core doing the least W0-W3 need) on its own database of the
same engine, seeded with as many users and tokens, under the same gunicorn flags.
Both servers run side by side and the rounds alternate between them (authserver
first in odd rounds, the reference first in even ones), so the report can give
each workload as a ratio authserver/reference measured under the same conditions.

It prints tables and, with --output, rewrites the generated part of a Markdown
file (`make bench` writes docs/performance.md).

Usage::

    make bench                                   # SQLite, defaults
    make bench BENCH_ARGS='--db both'            # SQLite and PostgreSQL
    .venv/bin/python bench/run.py --db postgresql --pg-url postgresql+psycopg://u@host/db
    .venv/bin/python bench/run.py --workloads W3 --duration 3 --rounds 1

The PostgreSQL database is wiped at start: point --pg-url at one the bench owns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

# `python bench/run.py` puts bench/ itself on sys.path; the modules are imported
# as the `bench` package from the repository root instead.
ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench import report  # noqa: E402
from bench import seeding  # noqa: E402
from bench import server as servers  # noqa: E402
from bench.loadgen import WORKLOADS  # noqa: E402
from bench.loadgen import Credentials  # noqa: E402
from bench.loadgen import LoadSettings  # noqa: E402
from bench.loadgen import WorkloadResult  # noqa: E402
from bench.report import DatabaseRun  # noqa: E402
from bench.report import ScaleRow  # noqa: E402

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/authserver_bench"
SCALED = ("W1", "W3")
REFERENCE_WORKLOADS = ("W0", "W1", "W2", "W3")
SETTLE_SECONDS = 0.5
NOTABLE_LOG = "server-notable.log"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line (every option has a default that suits `make bench`)."""
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("AUTHSERVER_BENCH_PG_URL") or DEFAULT_PG_URL,
        help="PostgreSQL database to use (created if missing, WIPED at "
        "start); default from AUTHSERVER_BENCH_PG_URL",
    )
    parser.add_argument(
        "--server",
        choices=sorted(servers.SERVER_MODES),
        default="gunicorn",
        help="how to start the server (see bench/server.py)",
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--also-server",
        choices=sorted(servers.SERVER_MODES),
        help="also run authserver under this server mode, side by side on the same "
        "database with its own single-use material (e.g. granian against gunicorn)",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the reference app (bench/reference) in the same run",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (medians reported)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of W0 and W2 before measuring (0: none)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ",".join(WORKLOADS),
    )
    parser.add_argument(
        "--users", type=int, default=1000, help="users (each with one access token for W1/W2)"
    )
    parser.add_argument(
        "--max-rate",
        type=int,
        default=3000,
        help="req/s the single-use material (W3 refresh tokens, W4 codes) "
        "must last for: max-rate x duration per round",
    )
    parser.add_argument(
        "--seed",
        choices=["bulk", "service"],
        default="bulk",
        help="how W3/W4 material is written: bulk rows (fast) or through "
        "the service layer (1-2 ms each)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also re-run W1 and W3 with many more tokens in the database",
    )
    parser.add_argument(
        "--scale-levels",
        default="10000,1000000",
        help="token families added for --scale, cumulative",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra AUTHSERVER_<KEY> for the server, e.g. "
        "RATE_LIMIT_INTROSPECTION='100000 per minute' (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="Markdown file to (re)generate")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where databases, token files and logs go (kept); "
        "default: a temp dir, removed unless something went wrong",
    )
    parser.add_argument("--keep-workdir", action="store_true", help="never remove the work dir")
    args = parser.parse_args(argv)

    names = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        parser.error(f"--workloads: unknown {', '.join(unknown) or '(none given)'}")
    args.workloads = [n for n in WORKLOADS if n in names]  # canonical order
    for name in ("workers", "connections", "threads", "duration", "rounds", "users", "max_rate"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk needs one per thread)")
    try:
        args.scale_levels = [int(v) for v in args.scale_levels.split(",") if v.strip()]
    except ValueError:
        parser.error("--scale-levels must be comma-separated whole numbers")
    if args.scale_levels != sorted(set(args.scale_levels)) or min(args.scale_levels, default=0) < 1:
        parser.error("--scale-levels must be increasing positive numbers")
    settings = {}
    for item in args.server_setting:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--server-setting {item!r}: expected KEY=VALUE")
        settings[key.upper().removeprefix("AUTHSERVER_")] = value
    args.server_settings = settings
    return args


def log_step(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the final tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def material_files(
    accounts: seeding.Accounts,
    args: argparse.Namespace,
    folder: Path,
    workloads: list[str],
    tag: str,
) -> dict[tuple[str, int], Path]:
    """Seed and write one file of fresh W3/W4 material per workload and round.

    Needs an app context. Each round gets its own file, so a round never sees a
    token an earlier round may have used.
    """
    per_round = args.max_rate * args.duration
    files = {}
    for r in range(args.rounds):
        if "W3" in workloads:
            tokens = seeding.refresh_tokens(accounts, per_round, via=args.seed)
            files["W3", r] = loadgen.write_tokens(folder / f"{tag}W3-round{r + 1}.txt", tokens)
        if "W4" in workloads:
            codes = seeding.authorization_codes(accounts, per_round, via=args.seed)
            files["W4", r] = loadgen.write_tokens(folder / f"{tag}W4-round{r + 1}.txt", codes)
    return files


@dataclass
class Target:
    """One server under test and the material its requests carry."""

    label: str
    base_url: str
    workloads: list[str]
    access_file: Path
    files: dict[tuple[str, int], Path]
    results: dict[str, WorkloadResult] = field(default_factory=dict)


def run_rounds(
    targets: list[Target],
    args: argparse.Namespace,
    load: LoadSettings,
    credentials: Credentials,
) -> None:
    """Run every workload once per round on every target, rounds interleaved.

    Within a workload the targets take turns, and their order flips every round,
    so a machine that slows down or speeds up during the run tilts neither side.
    """
    for target in targets:
        target.results = {
            name: WorkloadResult(target.label, WORKLOADS[name]) for name in target.workloads
        }
    names = [n for n in WORKLOADS if any(n in t.workloads for t in targets)]
    for r in range(args.rounds):
        for name in names:
            workload = WORKLOADS[name]
            order = targets if r % 2 == 0 else targets[::-1]
            for target in order:
                if name not in target.workloads:
                    continue
                tokens = (
                    target.access_file
                    if workload.material == "access"
                    else target.files.get((name, r))
                )
                outcome = loadgen.run_wrk(target.base_url, workload, tokens, load, credentials)
                target.results[name].rounds.append(outcome)
                log_step(
                    f"{target.label} round {r + 1} {name}: {outcome.rate:.0f} req/s, "
                    f"p99 {outcome.p99_ms:.1f} ms, non-2xx {outcome.non2xx}"
                    + (" (EXHAUSTED)" if outcome.exhausted else "")
                )
                # wrk stops sending at the deadline, but requests already queued in the
                # listen backlog are still being served: let them finish, so they neither
                # slow the next workload nor race with seeding.
                time.sleep(SETTLE_SECONDS)


def run_database(
    label: str, url: str, args: argparse.Namespace, workdir: Path, load: LoadSettings
) -> DatabaseRun:
    """Prepare, seed, serve and measure one database (and the reference's twin)."""
    from sqlalchemy.engine import make_url

    folder = workdir / label
    folder.mkdir(parents=True, exist_ok=True)
    run = DatabaseRun(label, "")
    reference_url = ""
    if label == "postgresql":
        log_step(f"postgresql: resetting {make_url(url).render_as_string(hide_password=True)}")
        run.server_version = seeding.reset_postgres(url)
        run.url_shown = make_url(url).render_as_string(hide_password=True)
        if args.reference:
            reference_url = reference_pg_url(url)
            seeding.reset_postgres(reference_url)
    else:
        # A --workdir may hold an earlier run's database: start from nothing.
        for leftover in [*folder.glob("bench.db*"), *folder.glob("reference.db*")]:
            leftover.unlink()
        url = "sqlite:///" + str(folder / "bench.db")
        reference_url = "sqlite:///" + str(folder / "reference.db")
        run.url_shown = "a fresh SQLite file in the temp work dir (WAL)"
    port = servers.free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = servers.server_env(url, folder / "instance", port, args.server_settings)
    seeding.cli(env, "db", "upgrade")

    log_step(
        f"{label}: seeding {args.users} users and "
        f"{args.max_rate * args.duration} single-use tokens per workload and round"
    )
    started = time.monotonic()
    with seeding.app_context(env):
        accounts = seeding.seed_accounts(args.users)
        access_file = loadgen.write_tokens(folder / "access.txt", accounts.access_tokens)
        files = material_files(accounts, args, folder, args.workloads, "")
    seeding.settle(url)
    run.seed_seconds = time.monotonic() - started
    credentials = Credentials(
        accounts.client_id,
        accounts.client_secret,
        accounts.rs_id,
        accounts.rs_secret,
        seeding.REDIRECT_URI,
    )
    targets = [Target(f"{label} authserver", base_url, list(args.workloads), access_file, files)]
    specs = [servers.SERVER_MODES[args.server](port=port, workers=args.workers, env=env)]
    logs = [folder / "server.log"]
    if args.also_server:
        also_port = servers.free_port()
        with seeding.app_context(env):
            also_files = material_files(accounts, args, folder, args.workloads, "also-")
        seeding.settle(url)
        targets.append(
            Target(
                f"{label} authserver ({args.also_server})",
                f"http://127.0.0.1:{also_port}",
                list(args.workloads),
                access_file,
                also_files,
            )
        )
        specs.append(
            servers.SERVER_MODES[args.also_server](port=also_port, workers=args.workers, env=env)
        )
        logs.append(folder / "also-server.log")
    reference = None
    if args.reference and any(n in REFERENCE_WORKLOADS for n in args.workloads):
        ref_port = servers.free_port()
        ref_target, ref_env = seed_reference(
            reference_url, folder, args, credentials, f"http://127.0.0.1:{ref_port}"
        )
        ref_target.label = f"{label} reference"
        targets.append(ref_target)
        reference = servers.reference_spec(port=ref_port, workers=args.workers, env=ref_env)
        specs.append(reference)
        logs.append(folder / "reference.log")

    log_step(
        f"{label}: seeded in {run.seed_seconds:.1f} s; starting "
        + ", ".join(spec.description for spec in specs)
    )
    running: list[servers.RunningServer] = []
    try:
        for spec, target, log_path in zip(specs, targets, logs, strict=True):
            running.append(servers.start(spec, target.base_url, log_path))
        if args.warmup:
            # First requests pay for imports, connection pools and query compilation
            # in each worker; W2 warms the database path without using up anything.
            for target in targets:
                for name in ("W0", "W2"):
                    loadgen.run_wrk(
                        target.base_url,
                        WORKLOADS[name],
                        target.access_file if name == "W2" else None,
                        load,
                        credentials,
                        duration=args.warmup,
                    )
        run_rounds(targets, args, load, credentials)
        run.results = list(targets[0].results.values())
        if reference is not None:
            run.reference = list(targets[-1].results.values())
        if args.also_server:
            run.also = (args.also_server, list(targets[1].results.values()))
        if args.scale and any(name in args.workloads for name in SCALED):
            run_scale(
                run,
                targets[0].results,
                accounts,
                env,
                args,
                load,
                credentials,
                access_file,
                folder,
                base_url,
            )
        for server in running:
            if not server.alive():
                raise SystemExit(f"{label}: a server died during the run; see {server.log_path}")
        run.memory = running[0].memory()
        if reference is not None:
            run.reference_memory = running[-1].memory()
        if args.also_server:
            run.also_memory = running[1].memory()
    finally:
        for server in running:
            server.stop()
    run.log = servers.summarize_log(folder / "server.log", folder / NOTABLE_LOG)
    if reference is not None:
        run.reference_log = servers.summarize_log(folder / "reference.log")
    return run


def reference_pg_url(url: str) -> str:
    """Return the reference's PostgreSQL database: the bench's name + ``_reference``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_reference").render_as_string(hide_password=False)


def seed_reference(
    url: str,
    folder: Path,
    args: argparse.Namespace,
    credentials: Credentials,
    base_url: str,
) -> tuple[Target, dict[str, str]]:
    """Create and fill the reference's database like authserver's; return its target and env.

    The same number of users (one access token each) and of fresh refresh tokens
    per round; the secrets are authserver's, so one wrk environment serves both.
    """
    from bench.reference import schema
    from bench.reference.app import make_engine

    # The reference's own settings: on SQLite the file is left in WAL mode, so the
    # workers' switch to WAL on connect is a no-op. Two workers switching a
    # rollback-journal file at once can get "database is locked" (no busy wait).
    engine = make_engine(url)
    try:
        schema.create(engine)
        user_ids, access = schema.seed_users(engine, args.users)
        files = {}
        if "W3" in args.workloads:
            for r in range(args.rounds):
                tokens = schema.seed_refresh_tokens(engine, user_ids, args.max_rate * args.duration)
                files["W3", r] = loadgen.write_tokens(
                    folder / f"reference-W3-round{r + 1}.txt", tokens
                )
    finally:
        engine.dispose()
    seeding.settle(url)
    access_file = loadgen.write_tokens(folder / "reference-access.txt", access)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "REFERENCE_"))}
    env.update(
        {
            "REFERENCE_DATABASE_URL": url,
            "REFERENCE_ISSUER": base_url,
            "REFERENCE_RS_ID": credentials.rs_id,
            "REFERENCE_RS_DIGEST": schema.digest(credentials.rs_secret),
            "REFERENCE_CLIENT_ID": credentials.client_id,
            "REFERENCE_CLIENT_DIGEST": schema.digest(credentials.client_secret),
        }
    )
    workloads = [n for n in args.workloads if n in REFERENCE_WORKLOADS]
    return Target("reference", base_url, workloads, access_file, files), env


def run_scale(
    run: DatabaseRun,
    base: dict[str, WorkloadResult],
    accounts: seeding.Accounts,
    env: dict[str, str],
    args: argparse.Namespace,
    load: LoadSettings,
    credentials: Credentials,
    access_file: Path,
    folder: Path,
    base_url: str,
) -> None:
    """Re-run W1 and W3 after adding each --scale-levels count of token families."""
    scaled = [name for name in SCALED if name in args.workloads]
    with seeding.app_context(env):
        counts = seeding.row_counts()
    run.scaling.append(ScaleRow(0, counts, {name: base[name] for name in scaled}))
    added = 0
    for level in args.scale_levels:
        log_step(f"{run.label}: adding {level - added} token families (total added {level})")
        started = time.monotonic()
        with seeding.app_context(env):
            seeding.fill(accounts, level - added)
            files = material_files(accounts, args, folder, scaled, f"scale{level}-")
            counts = seeding.row_counts()
        seeding.settle(str(env["AUTHSERVER_DATABASE_URL"]))
        added = level
        log_step(f"{run.label}: filled in {time.monotonic() - started:.1f} s; rows {counts}")
        target = Target(f"{run.label} +{level}", base_url, scaled, access_file, files)
        run_rounds([target], args, load, credentials)
        run.scaling.append(ScaleRow(level, counts, target.results))
    # What the nightly purge costs on tables this size (it finds nothing to delete:
    # every filler family is live, which is exactly the scan it has to do).
    started = time.monotonic()
    out = json.loads(seeding.cli(env, "tokens", "purge", "--json", timeout=1800))
    run.purge = (
        f"{run.label}: `authserver tokens purge` on these tables took "
        f"{time.monotonic() - started:.1f} s (server idle): "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in out.items())
    )


def settings_summary(args: argparse.Namespace, runs: list[DatabaseRun]) -> dict[str, str]:
    """Return the settings that shape the numbers, for the report."""
    from authserver.config import DEFAULTS

    def setting(key: str) -> str:
        return str(args.server_settings.get(key, DEFAULTS[key]))

    limits = setting("RATE_LIMITS")
    storage = "Redis" if setting("REDIS_URL") else "in-memory, per worker"
    spec = servers.SERVER_MODES[args.server](port=0, workers=args.workers, env={})
    shown = {
        "server": spec.description,
        "reference": "bench/reference (Flask + SQLAlchemy Core), same gunicorn flags, "
        "its own database of the same engine seeded with as many users and tokens"
        if args.reference
        else "not run (--no-reference)",
        "wrk": f"{args.threads} threads, {args.connections} connections, loopback",
        "duration and rounds": f"{args.duration} s, {args.rounds} rounds (medians reported), "
        f"{args.warmup} s warm-up of W0 and W2",
        "rate limits": f"{limits} ({storage}); introspection "
        f"{setting('RATE_LIMIT_INTROSPECTION')} per resource server, "
        f"token failures {setting('RATE_LIMIT_TOKEN_FAILURES')} per client",
        "log format": f"{setting('LOG_FORMAT')}, server stderr to a file",
        "data": f"{args.users:,} users with one access token each (W1/W2 rotate through "
        f"them); {args.max_rate * args.duration:,} fresh refresh tokens and codes "
        f"per round (--max-rate {args.max_rate}), seeded via {args.seed}",
    }
    for run in runs:
        shown[f"database ({run.label})"] = f"{run.url_shown}; seeded in {run.seed_seconds:.0f} s"
    if args.server_settings:
        shown["server settings"] = ", ".join(
            f"AUTHSERVER_{k}={v}" for k, v in args.server_settings.items()
        )
    return shown


def keep_logs_only(workdir: Path) -> None:
    """Delete all but what explains a problem: databases and token files can be large.

    Each database folder keeps its excerpt of notable server log lines, or the
    whole server log when the run stopped before the excerpt was made.
    """
    for path in workdir.rglob("*"):
        if not path.is_file() or path.name == NOTABLE_LOG:
            continue
        if path.name == "server.log" and not (path.parent / NOTABLE_LOG).exists():
            continue
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    wrk_version = loadgen.wrk_version()  # exits with the apt hint when wrk is missing
    # Read before the run: the load average then says how busy the machine was.
    machine = report.machine()
    started = datetime.now(UTC)
    load = LoadSettings(args.threads, args.connections, args.duration)
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="authserver-bench-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    log_step(f"work dir {workdir}")

    targets = {
        "sqlite": ["sqlite"],
        "postgresql": ["postgresql"],
        "both": ["sqlite", "postgresql"],
    }[args.db]
    runs: list[DatabaseRun] = []
    ok = False
    try:
        for label in targets:
            runs.append(run_database(label, args.pg_url, args, workdir, load))
        ok = True
    finally:
        findings = any(
            r.non2xx or r.exhausted for run in runs for _, results in run.servers() for r in results
        ) or any(run.log and run.log.levels for run in runs)
        if temporary and not args.keep_workdir:
            if ok and not findings:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                keep_logs_only(workdir)
                log_step(f"server logs kept in {workdir}")

    print()
    print(report.text_report(runs))
    if args.output:
        pg_version = next((run.server_version for run in runs if run.server_version), None)
        document = report.markdown(
            command=report.command_line(raw_argv),
            started=started,
            machine=machine,
            versions=report.versions(pg_version, wrk_version),
            settings=settings_summary(args, runs),
            runs=runs,
        )
        report.write_section(args.output, document)
        log_step(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
