"""Hostile arguments to every CLI command: a clear error or a clean success, never a
traceback, and nothing half-written to the database."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import OAuth2Client
from authserver.models import ResourceServer
from authserver.models import TokenFamily
from authserver.models import User
from tests.factories import IFTTT_REDIRECT
from tests.factories import PASSWORD
from tests.factories import make_tokens

SCRIPT = "<script>alert(1)</script>"
HOSTILE = {
    "empty": "",
    "nul": "wal\x00ter",
    "10 kB": "A" * 10240,
    "sql": "' OR '1'='1' --; DROP TABLE users; --",
    "html": SCRIPT,
    "rtl override": "\u202ewalter",
    "newline": "walter\nEvil: injected",
    "percent": "%ff%00%s%n",
}

# Commands that look something up by name: {} is the hostile value.
LOOKUPS = [
    ["users", "show", "{}"],
    ["users", "show", "{}", "--json"],
    ["users", "set-password", "{}", "--password-stdin"],
    ["users", "disable", "{}"],
    ["users", "enable", "{}"],
    ["users", "delete", "{}", "--yes"],
    ["clients", "show", "{}"],
    ["clients", "delete", "{}", "--yes"],
    ["clients", "update", "{}", "--name", "x"],
    ["clients", "disable", "{}"],
    ["clients", "enable", "{}"],
    ["clients", "rotate-secret", "{}"],
    ["clients", "secrets", "{}"],
    ["clients", "expire-secret", "{}", "--old"],
    ["clients", "revoke-tokens", "{}"],
    ["resource-servers", "delete", "{}", "--yes"],
    ["resource-servers", "rotate-secret", "{}"],
    ["resource-servers", "secrets", "{}"],
    ["resource-servers", "expire-secret", "{}", "--old"],
    ["tokens", "issue", "--user", "{}", "--client", "ifttt"],
    ["tokens", "issue", "--user", "walter", "--client", "{}"],
    ["tokens", "revoke", "--user", "{}"],
    ["tokens", "revoke", "--client", "{}"],
    ["tokens", "revoke", "--token", "{}"],
    ["tokens", "list", "--user", "{}"],
    ["tokens", "list", "--client", "{}"],
]

# Commands that create or change something with the hostile value.
WRITES = [
    ["users", "create", "{}", "--name", "Jesse", "--password-stdin"],
    ["users", "create", "jesse", "--name", "{}", "--password-stdin"],
    ["users", "create", "jesse", "--name", "Jesse", "--email", "{}", "--password-stdin"],
    ["users", "set-password", "walter", "--password-stdin"],
    ["clients", "create", "{}", "--redirect-uri", IFTTT_REDIRECT],
    ["clients", "create", "App", "--redirect-uri", "{}"],
    ["clients", "create", "App", "--redirect-uri", IFTTT_REDIRECT, "--client-id", "{}"],
    ["clients", "create", "App", "--redirect-uri", IFTTT_REDIRECT, "--scope", "{}"],
    ["clients", "update", "ifttt", "--name", "{}"],
    ["clients", "update", "ifttt", "--add-redirect-uri", "{}"],
    ["clients", "update", "ifttt", "--remove-redirect-uri", "{}"],
    ["clients", "update", "ifttt", "--scope", "{}"],
    ["resource-servers", "create", "{}"],
    ["tokens", "issue", "--user", "walter", "--client", "ifttt", "--scope", "{}"],
]

# Options whose values are parsed (durations, numbers, choices).
PARSED = [
    ["clients", "rotate-secret", "ifttt", "--overlap", "{}"],
    ["clients", "update", "ifttt", "--access-token-lifetime", "{}"],
    ["clients", "update", "ifttt", "--grace-period", "{}"],
    ["resource-servers", "rotate-secret", "{server}", "--overlap", "{}"],
    ["audit", "--since", "{}"],
    ["audit", "--limit", "{}"],
    ["audit", "--type", "{}"],
    ["serve", "--port", "{}"],
    ["serve", "--workers", "{}"],
]


@pytest.fixture
def world(app, user, oauth_client):
    from authserver.services import clients as client_service

    server, _ = client_service.register_resource_server("shim")
    make_tokens(user, oauth_client)
    return {"server": server.server_id}


def _live_families():
    db.session.expire_all()
    return db.session.scalar(
        select(func.count()).select_from(TokenFamily).where(TokenFamily.revoked_at.is_(None))
    )


def _args(template, value, world):
    return [part.replace("{}", value).replace("{server}", world["server"]) for part in template]


def _counts():
    db.session.expire_all()
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (User, OAuth2Client, ResourceServer)
    )


def assert_clean(result, context):
    """Either success, or an error line on stderr; never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        context,
        repr(result.exception),
    )
    assert "Traceback" not in result.output, context
    if result.exit_code != 0:
        assert "Error:" in result.stderr, (context, result.stderr[:300])
        assert "Traceback" not in result.stderr, context


def _label(template):
    return " ".join(part for part in template if part != "{}")


@pytest.mark.parametrize("template", LOOKUPS, ids=[_label(t) for t in LOOKUPS])
def test_lookup_with_hostile_name_is_a_clean_error(cli, world, template):
    before = _counts()
    assert _live_families() == 1
    for name, value in HOSTILE.items():
        result = cli.invoke(args=_args(template, value, world), input=PASSWORD + "\n")
        context = f"{_label(template)} [{name}]"
        assert_clean(result, context)
        assert result.exit_code != 0, (context, result.output)
        assert result.stdout == "", context
        lines = result.stderr.strip().splitlines()
        assert lines, (context, result.stderr[:300])
        assert lines[-1].startswith("Error:"), (context, result.stderr[:300])
    assert _counts() == before
    # No hostile name widened a revocation to everybody's tokens.
    assert _live_families() == 1


@pytest.mark.parametrize("template", WRITES, ids=[_label(t) for t in WRITES])
def test_write_with_hostile_value_never_crashes_or_stores_garbage(cli, world, template):
    for name, value in HOSTILE.items():
        stdin = (value if "set-password" in template else PASSWORD) + "\n"
        result = cli.invoke(args=_args(template, value, world), input=stdin)
        context = f"{_label(template)} [{name}]"
        assert_clean(result, context)
        # Empty may mean "the default" (e.g. --scope ""); NUL and 10 kB never fit.
        if name in ("nul", "10 kB"):
            assert result.exit_code != 0, (context, result.output[:300])
    # Nothing stored holds a NUL or a 10 kB value.
    db.session.expire_all()
    for user in db.session.scalars(select(User)):
        assert "\x00" not in user.username + user.name + (user.email or "")
        assert len(user.username) <= 150
    for oauth_client in db.session.scalars(select(OAuth2Client)):
        assert "\x00" not in oauth_client.client_id + oauth_client.name
        assert len(oauth_client.name) <= 200
    for server in db.session.scalars(select(ResourceServer)):
        assert "\x00" not in server.name


@pytest.mark.parametrize("template", PARSED, ids=[_label(t) for t in PARSED])
def test_unparseable_option_is_a_usage_error(cli, world, template):
    for name, value in HOSTILE.items():
        result = cli.invoke(args=_args(template, value, world))
        context = f"{_label(template)} [{name}]"
        assert_clean(result, context)
        assert result.exit_code == 2, (context, result.exit_code, result.output[:300])
        assert result.stdout == "", context


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_audit_filters_with_hostile_values_answer_nothing(cli, world, value):
    for option in ("--client", "--user"):
        result = cli.invoke(args=["audit", option, value, "--json"])
        assert_clean(result, option)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "[]"


def test_sql_and_html_values_are_stored_verbatim(cli, app):
    sql = HOSTILE["sql"]
    result = cli.invoke(
        args=["users", "create", "bobby", "--name", sql, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.stderr
    result = cli.invoke(
        args=[
            "clients",
            "create",
            SCRIPT,
            "--redirect-uri",
            IFTTT_REDIRECT,
            "--client-id",
            "tables",
        ]
    )
    assert result.exit_code == 0, result.stderr
    db.session.expire_all()
    assert db.session.scalar(select(User.name).where(User.username == "bobby")) == sql
    assert (
        db.session.scalar(select(OAuth2Client.name).where(OAuth2Client.client_id == "tables"))
        == SCRIPT
    )


@pytest.mark.parametrize(
    "uri",
    [
        IFTTT_REDIRECT + "#fragment",
        "javascript:alert(1)",
        "http://ifttt.com/channels/acme/authorize",
        "https://",
        "not a url",
        "https://exa mple.com/cb",
    ],
)
def test_client_redirect_uri_with_fragment_or_bad_scheme_is_refused(cli, app, uri):
    result = cli.invoke(args=["clients", "create", "App", "--redirect-uri", uri])
    assert_clean(result, uri)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error:")
    assert len(result.stderr.strip().splitlines()) == 1
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(OAuth2Client)) == 0


def test_unicode_username_round_trips_through_the_cli(cli, app):
    result = cli.invoke(
        args=["users", "create", "zoë", "--name", "Zoë 🦄", "--password-stdin", "--json"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.stderr
    # The decomposed spelling finds the same account.
    result = cli.invoke(args=["users", "show", "zoe\u0308", "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"name": "Zo\\u00eb \\ud83e\\udd84"' in result.stdout or "Zoë 🦄" in result.stdout


def test_invalid_rate_limit_setting_is_one_line_error_from_the_console_script(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env.update(
        AUTHSERVER_INSTANCE_PATH=str(tmp_path),
        AUTHSERVER_DATABASE_URL="sqlite:///" + str(tmp_path / "x.db"),
        AUTHSERVER_RATE_LIMIT_LOGIN_IP="as often as you like",
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("authserver")), "users", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: AUTHSERVER_RATE_LIMIT_LOGIN_IP must look like '10 per minute' "
        "(got 'as often as you like')"
    ]
    assert "Traceback" not in result.stderr
