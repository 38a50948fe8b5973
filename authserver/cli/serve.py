"""`authserver serve`: run the app under gunicorn."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option(
    "--timeout",
    type=click.IntRange(1, 3600),
    default=30,
    show_default=True,
    help="Seconds before a stuck worker is restarted.",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(1, 3600),
    default=30,
    show_default=True,
    help="Seconds in-flight requests get on SIGTERM.",
)
def serve_command(host: str, port: int, workers: int, timeout: int, graceful_timeout: int) -> None:
    """Serve the app with gunicorn (SIGTERM finishes in-flight requests, then exits).

    The process replaces itself with gunicorn's master (exec), so a supervisor's
    SIGTERM reaches gunicorn directly and every worker stops with it.
    """
    env = dict(os.environ)
    # prometheus-client counts across worker processes through files in this folder;
    # it must be empty at start, so each serve gets a fresh one.
    metrics_dir = tempfile.mkdtemp(prefix="authserver-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        str(graceful_timeout),
        "--config",
        "python:authserver.gunicorn_conf",
        "authserver.wsgi:app",
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)  # noqa: S606 - exec is the point: SIGTERM reaches gunicorn
    except OSError as error:  # pragma: no cover - exec only fails on a broken install
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise click.ClickException(f"could not start gunicorn: {error}") from None
