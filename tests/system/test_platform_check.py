"""`authserver check PLATFORM` as a subprocess against a real server, per profile."""

import os
import subprocess

import pytest

from authserver.services import clients as client_service
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import make_oauth_client
from tests.system.conftest import AUTHSERVER
from tests.system.conftest import start_server
from tests.system.test_ifttt_check import CHECK_TITLES as IFTTT_TITLES

pytestmark = pytest.mark.slow

GOOGLE_TITLES = [
    "authorize, log in, consent, redirect with code and state",
    "code exchange",
    "access token is opaque, not a JWT",
    "every refresh returns a new access token",
    "previous refresh token still works after a rotation",
    "bogus refresh token gets 400 invalid_grant",
    "revocation kills the grant",
]
ALEXA_TITLES = [
    "authorize, log in, consent, redirect with code and state",
    "code exchange",
    "refresh responses carry expires_in",
    "original refresh token still works after two refreshes",
]


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    process = start_server(database_url, tmp_path_factory.mktemp("platform-check"), workers=2)
    yield process
    process.stop()


def run_check(tmp_path, base_url, platform, oauth_client, secret, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["AUTHSERVER_INSTANCE_PATH"] = str(tmp_path / "check-instance")
    env["AUTHSERVER_CHECK_CLIENT_SECRET"] = secret
    argv = [
        AUTHSERVER,
        "check",
        platform,
        "--base-url",
        base_url,
        "--client-id",
        oauth_client.client_id,
        "--username",
        "walter",
        "--password-stdin",
        "--redirect-uri",
        IFTTT_REDIRECT,
        "--timeout",
        "20",
        *extra,
    ]
    return subprocess.run(
        argv, env=env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=180
    )


def statuses(result):
    return [line.split(":", 1)[0] for line in result.stdout.strip().splitlines()[:-1]]


def profiled(profile):
    oauth_client, secret = make_oauth_client(policy=client_service.PolicyChange(profile=profile))
    assert secret is not None
    return oauth_client, secret


@pytest.mark.parametrize(
    ("platform", "profile", "titles"),
    [
        ("google", "google", GOOGLE_TITLES),
        ("alexa", "alexa", ALEXA_TITLES),
        ("ifttt", "ifttt", IFTTT_TITLES),
    ],
)
def test_check_passes_against_the_matching_profile(
    tmp_path, server, user, platform, profile, titles
):
    oauth_client, secret = profiled(profile)
    result = run_check(tmp_path, server.base_url, platform, oauth_client, secret)
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result) == [f"PASS  {title}" for title in titles]
    assert result.stdout.strip().splitlines()[-1] == f"All {len(titles)} checks passed."
    assert secret not in result.stdout


@pytest.mark.parametrize(
    ("platform", "profile", "titles", "failing", "reason"),
    [
        ("google", "ifttt", GOOGLE_TITLES, 4, "already issued"),
        ("google", "strict", GOOGLE_TITLES, 4, "invalid_grant"),
        ("alexa", "ifttt", ALEXA_TITLES, 3, "invalid_grant"),
        ("alexa", "google", ALEXA_TITLES, 3, "invalid_grant"),
        ("ifttt", "strict", IFTTT_TITLES, 6, "invalid_grant"),
    ],
)
def test_check_fails_on_the_right_line_against_the_wrong_profile(
    tmp_path, server, user, platform, profile, titles, failing, reason
):
    oauth_client, secret = profiled(profile)
    result = run_check(tmp_path, server.base_url, platform, oauth_client, secret)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [status.split("  ")[0] for status in statuses(result)[: failing + 1]] == [
        "PASS"
    ] * failing + ["FAIL"], result.stdout
    assert lines[failing].startswith(f"FAIL  {titles[failing]}: "), result.stdout
    assert reason in lines[failing], result.stdout
    assert "Traceback" not in result.stderr


def test_google_check_waits_past_an_ifttt_window(tmp_path, server_factory, user):
    """--wait: an ifttt client with a 1 s window fails on the previous-token line."""
    server = server_factory(workers=1, REFRESH_GRACE_SECONDS=1)
    oauth_client, secret = profiled("ifttt")
    result = run_check(tmp_path, server.base_url, "google", oauth_client, secret, "--wait", "2")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, result.stdout
    assert lines[4].startswith("FAIL  previous refresh token still works after a rotation: ")
    assert "after 2s" in lines[4]
    assert "invalid_grant" in lines[4]
