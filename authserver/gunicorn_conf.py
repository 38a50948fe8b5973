"""Gunicorn settings used by `authserver serve`."""

from __future__ import annotations

import os
import shutil
from typing import Any

accesslog = None  # our own JSON request log replaces gunicorn's access log
errorlog = "-"
worker_class = "sync"
# gunicorn ≥ 23 opens a control socket at one fixed path per user; several instances
# on one host would fight over it, and supervisors use signals anyway.
control_socket_disable = True
# Sync workers answer each connection once and close it (gunicorn ignores keep-alive
# for them); measured, threaded workers with keep-alive were not faster on the token
# and introspection paths and had worse tail latency (docs/performance.md). The
# setting applies to anyone who runs gunicorn with --worker-class gthread.
keepalive = 5


def child_exit(server: Any, worker: Any) -> None:
    """Tell prometheus-client a worker died, so its live gauges are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the per-run metrics folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if folder and os.path.basename(folder).startswith("authserver-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
