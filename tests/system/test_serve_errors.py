"""`authserver serve` and `make run` when the operator gets something wrong."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from tests.system.conftest import AUTHSERVER
from tests.system.conftest import free_port
from tests.system.conftest import server_env

REPO = Path(__file__).resolve().parents[2]


def metrics_folders(root):
    return {p.name for p in Path(root).glob("authserver-metrics-*")}


def run_serve(args, env, tmp_path):
    # A private TMPDIR shows whether serve left a metrics folder behind.
    env = {**env, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [AUTHSERVER, "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused(done, tmp_path, *fragments):
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Serving on" not in done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: cannot serve on ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert metrics_folders(tmp_path / "tmp") == set()


def test_serve_on_a_port_in_use_is_one_line(database_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = server_env(database_url, tmp_path / "instance", port)
        done = run_serve(["--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    assert_refused(done, tmp_path, f"127.0.0.1:{port}", "already in use")


def test_serve_on_an_unresolvable_host_is_one_line(database_url, tmp_path):
    port = free_port()
    env = server_env(database_url, tmp_path / "instance", port)
    done = run_serve(["--host", "no-such-host.invalid", "--port", str(port)], env, tmp_path)
    assert_refused(done, tmp_path, "no-such-host.invalid", "does not resolve")


def test_serve_on_a_foreign_address_is_one_line(database_url, tmp_path):
    port = free_port()
    env = server_env(database_url, tmp_path / "instance", port)
    # TEST-NET-1 (RFC 5737): never an address of this machine.
    done = run_serve(["--host", "192.0.2.1", "--port", str(port)], env, tmp_path)
    assert_refused(done, tmp_path, "192.0.2.1", "does not belong to this machine")


def test_serve_announces_itself_after_binding_and_cleans_its_metrics_folder(
    app, database_url, tmp_path
):
    port = free_port()
    env = server_env(database_url, tmp_path / "instance", port)
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [AUTHSERVER, "serve", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        response = _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        assert response.status_code == 200
        assert len(metrics_folders(tmp_path / "tmp")) == 1
        first_line = log_path.read_text().splitlines()[0]
        assert first_line.startswith(f"Serving on http://127.0.0.1:{port} with 1 worker;")
        assert f"http://127.0.0.1:{port}/login" in first_line
        assert "Warning" not in log_path.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0
    assert metrics_folders(tmp_path / "tmp") == set()


def test_serve_warns_when_a_local_issuer_names_another_port(database_url, tmp_path):
    port = free_port()
    env = server_env(database_url, tmp_path / "instance", port)
    env["AUTHSERVER_ISSUER"] = "http://127.0.0.1:1"
    process = subprocess.Popen(
        [AUTHSERVER, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert (
        f"Warning: AUTHSERVER_ISSUER is http://127.0.0.1:1, but this server listens on port {port}"
        in stderr
    )


def _wait_healthy(url, process):
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            return requests.get(url, timeout=1)
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("server did not answer")


@pytest.mark.parametrize(
    ("host", "port", "issuer"),
    [
        ("127.0.0.1", "9123", "http://127.0.0.1:9123"),
        ("localhost", "8001", "http://localhost:8001"),
        ("::1", "9000", "http://[::1]:9000"),
        ("0.0.0.0", "8080", "http://127.0.0.1:8080"),  # noqa: S104 - the wildcard is the input
    ],
)
def test_make_run_sets_the_issuer_from_host_and_port(tmp_path, host, port, issuer):
    venv = _fake_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "run", f"VENV={venv}", f"HOST={host}", f"PORT={port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = done.stdout.splitlines()
    assert calls[-1] == f"serve --host {host} --port {port} --workers 2 issuer={issuer}"
    assert all(line.endswith(f"issuer={issuer}") for line in calls)


def test_make_run_keeps_an_issuer_set_in_the_environment(tmp_path):
    venv = _fake_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["AUTHSERVER_ISSUER"] = "https://auth.example.com"
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "run", f"VENV={venv}", "PORT=9999"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("issuer=https://auth.example.com")


def _fake_venv(tmp_path):
    """A venv whose `authserver` only reports how make called it."""
    venv = Path(tempfile.mkdtemp(dir=tmp_path))
    (venv / "bin").mkdir()
    python = venv / "bin" / "python"
    python.symlink_to(shutil.which("python3") or "/usr/bin/python3")
    script = venv / "bin" / "authserver"
    script.write_text('#!/bin/sh\necho "$* issuer=$AUTHSERVER_ISSUER"\n')
    script.chmod(0o755)
    # Newer than pyproject.toml: make sees nothing to install.
    (venv / ".installed").touch()
    return venv
