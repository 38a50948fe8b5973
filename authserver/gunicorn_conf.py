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
# Keep-alive helps shims that reuse connections for introspection.
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
