"""`authserver ifttt-check` as a subprocess against real server processes."""

import os
import subprocess

import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import TokenFamily
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import make_oauth_client
from tests.system.conftest import AUTHSERVER
from tests.system.conftest import free_port
from tests.system.conftest import start_server

pytestmark = pytest.mark.slow

CHECK_TITLES = [
    "authorize, log in, consent, redirect with code and state",
    "code exchange with credentials in the body",
    "user info with the new token",
    "invalid code is refused with invalid_grant",
    "bogus token on user info is refused with 401",
    "refresh",
    "older refresh token does not expire immediately",
]


@pytest.fixture(scope="module")
def good_server(database_url, tmp_path_factory):
    """A correctly configured deployment, shared by the tests that leave it running."""
    process = start_server(database_url, tmp_path_factory.mktemp("check-server"), workers=2)
    yield process
    process.stop()


def run_check(
    tmp_path,
    base_url,
    oauth_client,
    secret,
    *,
    password=PASSWORD,
    redirect_uri=IFTTT_REDIRECT,
    extra=(),
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    # The command talks HTTP only; its own app needs nothing but an instance folder.
    env["AUTHSERVER_INSTANCE_PATH"] = str(tmp_path / "check-instance")
    argv = [
        AUTHSERVER,
        "ifttt-check",
        "--base-url",
        base_url,
        "--client-id",
        oauth_client.client_id,
        "--client-secret",
        secret,
        "--username",
        "walter",
        "--password",
        password,
        "--timeout",
        "20",
        *extra,
    ]
    if redirect_uri:
        argv += ["--redirect-uri", redirect_uri]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def lines_of(result):
    return result.stdout.strip().splitlines()


def test_ifttt_check_passes_on_correct_deployment(
    tmp_path, good_server, user, oauth_client, client_secret
):
    result = run_check(tmp_path, good_server.base_url, oauth_client, client_secret)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_of(result)
    assert [line.split(":", 1)[0] for line in lines[:-1]] == [
        f"PASS  {title}" for title in CHECK_TITLES
    ]
    assert lines[-1] == "All 7 checks passed."
    assert "after consent" in lines[0]
    assert client_secret not in result.stdout
    # It really went through: the test account now has a live grant for the client.
    families = db.session.scalars(select(TokenFamily)).all()
    assert [(f.user.username, f.scope, f.revoked_at) for f in families] == [
        ("walter", "ifttt", None)
    ]
    # IFTTT reconnecting: consent is remembered, the flow still completes.
    second = run_check(tmp_path, good_server.base_url, oauth_client, client_secret)
    assert second.returncode == 0, second.stdout
    assert "consent remembered" in lines_of(second)[0]


def test_ifttt_check_passes_without_redirect_uri_for_a_single_uri_client(
    tmp_path, good_server, user
):
    # RFC 6749 §4.1.3: no redirect_uri in the authorization request, none at the token
    # endpoint; the client's only registered URI receives the code.
    single, secret = make_oauth_client(name="IFTTT", redirect_uris=[IFTTT_REDIRECT])
    assert secret is not None
    result = run_check(tmp_path, good_server.base_url, single, secret, redirect_uri=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result)[-1] == "All 7 checks passed."


def test_ifttt_check_fails_on_older_refresh_token_when_grace_is_zero(
    tmp_path, server_factory, user, oauth_client, client_secret
):
    server = server_factory(workers=1, REFRESH_GRACE_SECONDS=0, REFRESH_ROTATION=True)
    result = run_check(tmp_path, server.base_url, oauth_client, client_secret)
    assert result.returncode == 1
    lines = lines_of(result)
    assert [line.split("  ", 1)[0] for line in lines[:-1]] == ["PASS"] * 6 + ["FAIL"]
    failure = lines[6]
    assert failure.startswith("FAIL  older refresh token does not expire immediately: ")
    assert "previous refresh token was refused" in failure
    assert "invalid_grant" in failure
    assert "AUTHSERVER_REFRESH_GRACE_SECONDS" in failure
    assert lines[-1] == "1 of 7 checks failed."
    assert "Traceback" not in result.stderr


def test_ifttt_check_reports_wrong_password(
    tmp_path, good_server, user, oauth_client, client_secret
):
    result = run_check(
        tmp_path, good_server.base_url, oauth_client, client_secret, password="not the password"
    )
    assert result.returncode == 1
    lines = lines_of(result)
    assert lines[0].startswith("FAIL  authorize")
    assert "username or password" in lines[0]
    # The checks that need no login still run; the others say why they were skipped.
    assert lines[3].startswith("PASS  invalid code")
    assert lines[4].startswith("PASS  bogus token")
    assert "skipped: no authorization code" in lines[1]
    assert "Traceback" not in result.stderr


def test_ifttt_check_reports_unregistered_redirect_uri(
    tmp_path, good_server, user, oauth_client, client_secret
):
    result = run_check(
        tmp_path,
        good_server.base_url,
        oauth_client,
        client_secret,
        redirect_uri="https://ifttt.com/channels/other/authorize",
    )
    assert result.returncode == 1
    first = lines_of(result)[0]
    assert first.startswith("FAIL  authorize")
    assert "HTTP 400" in first


def test_ifttt_check_reports_unreachable_deployment(tmp_path, app, oauth_client, client_secret):
    result = run_check(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        oauth_client,
        client_secret,
        extra=("--timeout", "2"),
    )
    assert result.returncode == 1
    lines = lines_of(result)
    assert len(lines) == 8
    assert all(line.startswith("FAIL  ") for line in lines[:-1])
    assert "could not reach" in lines[0]
    assert "Traceback" not in result.stderr


def test_ifttt_check_refuses_bad_base_url(tmp_path, app, oauth_client, client_secret):
    result = run_check(tmp_path, "ftp://example", oauth_client, client_secret)
    assert result.returncode == 2
    assert "--base-url" in result.stderr
    assert "Traceback" not in result.stderr


def run_check_without_secret_flags(tmp_path, base_url, oauth_client, *, stdin=None, env_extra=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["AUTHSERVER_INSTANCE_PATH"] = str(tmp_path / "check-instance")
    env.update(env_extra)
    argv = [
        AUTHSERVER,
        "ifttt-check",
        "--base-url",
        base_url,
        "--client-id",
        oauth_client.client_id,
        "--username",
        "walter",
        "--redirect-uri",
        IFTTT_REDIRECT,
        "--timeout",
        "20",
    ]
    if stdin is not None:
        argv += ["--client-secret-stdin", "--password-stdin"]
    return subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=180)


def test_ifttt_check_reads_secrets_from_stdin(
    tmp_path, good_server, user, oauth_client, client_secret
):
    result = run_check_without_secret_flags(
        tmp_path, good_server.base_url, oauth_client, stdin=f"{client_secret}\n{PASSWORD}\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result)[-1] == "All 7 checks passed."


def test_ifttt_check_reads_secrets_from_the_environment(
    tmp_path, good_server, user, oauth_client, client_secret
):
    result = run_check_without_secret_flags(
        tmp_path,
        good_server.base_url,
        oauth_client,
        env_extra={
            "AUTHSERVER_CHECK_CLIENT_SECRET": client_secret,
            "AUTHSERVER_CHECK_PASSWORD": PASSWORD,
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result)[-1] == "All 7 checks passed."
