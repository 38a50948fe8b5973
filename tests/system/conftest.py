"""Real server processes (`authserver serve`) on the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_SECRET_KEY

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running `authserver serve` and how to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


def server_env(database_url: str, instance: Path, port: int, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        {
            "AUTHSERVER_DATABASE_URL": database_url,
            "AUTHSERVER_SECRET_KEY": TEST_SECRET_KEY,
            "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
            "AUTHSERVER_RATE_LIMITS": "off",
            "AUTHSERVER_INSTANCE_PATH": str(instance),
            "AUTHSERVER_LOG_FORMAT": "json",
        }
    )
    for key, value in settings.items():
        env["AUTHSERVER_" + key] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def start_server(
    database_url: str, tmp_path: Path, *, workers: int = 2, port: int | None = None, **settings: Any
) -> ServerProcess:
    """Start `authserver serve` and wait until /healthz answers."""
    port = port or free_port()
    instance = tmp_path / f"instance-{port}"
    log_path = tmp_path / f"server-{port}.log"
    env = server_env(database_url, instance, port, **settings)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                AUTHSERVER,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if requests.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")


@pytest.fixture
def server_factory(
    app: Any, database_url: str, tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Start real servers on the test database; all are stopped after the test.

    Depends on ``app`` so the in-process app can arrange rows and cleans them after.
    """
    started: list[ServerProcess] = []

    def _start(**kwargs: Any) -> ServerProcess:
        server = start_server(database_url, tmp_path, **kwargs)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop(signal.SIGTERM)


@pytest.fixture
def live_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()
