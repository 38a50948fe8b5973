"""`authserver serve`: run the app under gunicorn."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from urllib.parse import urlsplit

import click
from flask import current_app

from ..config import is_loopback_host

# gunicorn's default listen backlog.
BACKLOG = 2048


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port, as gunicorn would.

    Binding here, before gunicorn starts, turns every reason it cannot work into one
    line (gunicorn itself would retry for five seconds and print a traceback-like
    log), and the socket is handed to gunicorn (``fd://``), so nothing can take the
    port between our check and its start.

    :raises click.ClickException: when the host does not resolve or the port is taken.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise click.ClickException(
            f"cannot serve on {where}: the host {host!r} does not resolve ({error.strerror}); "
            "use an address of this machine, e.g. --host 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        # As gunicorn does: a restart must not wait for TIME_WAIT connections.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as error:
        listener.close()
        reasons = {
            errno.EADDRINUSE: "the port is already in use (is another server running? "
            "choose another with --port)",
            errno.EADDRNOTAVAIL: "that address does not belong to this machine",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
        }
        reason = reasons.get(error.errno or 0, error.strerror or str(error))
        raise click.ClickException(f"cannot serve on {where}: {reason}") from None
    return listener


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind (0: any free port).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker processes.",
)
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
    listener = bind_listener(host, port)
    bound_port = int(listener.getsockname()[1])
    os.set_inheritable(listener.fileno(), True)
    env = dict(os.environ)
    # prometheus-client counts across worker processes through files in this folder;
    # it must be empty at start, so each serve gets a fresh one (gunicorn_conf.on_exit
    # removes it). Made only once the port is ours: a failed start leaves nothing.
    metrics_dir = tempfile.mkdtemp(prefix="authserver-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{listener.fileno()}",
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
    _announce(host, bound_port, workers)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)  # noqa: S606 - exec is the point: SIGTERM reaches gunicorn
    except OSError as error:  # pragma: no cover - exec only fails on a broken install
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise click.ClickException(f"could not start gunicorn: {error}") from None


def _announce(host: str, port: int, workers: int) -> None:
    """Say where the server listens, and warn when the issuer points elsewhere."""
    shown = f"[{host}]" if ":" in host else host
    issuer = str(current_app.config["ISSUER"]).rstrip("/")
    click.echo(
        f"Serving on http://{shown}:{port} with {workers} worker{'s' if workers != 1 else ''}; "
        f"sign in at {issuer}/login (Ctrl-C to stop)"
    )
    parts = urlsplit(issuer)
    # Behind a proxy the issuer differs on purpose; a loopback http issuer is local
    # development, where a different port means every link and redirect is broken.
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        issuer_port = parts.port or 80
        if issuer_port != port:
            click.echo(
                f"Warning: AUTHSERVER_ISSUER is {issuer}, but this server listens on port "
                f"{port}; set AUTHSERVER_ISSUER=http://{shown}:{port} so links and "
                "redirects reach it",
                err=True,
            )
