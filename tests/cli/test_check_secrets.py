"""Where `ifttt-check` takes its secrets from: flags, environment or stdin."""

import pytest

from authserver.cli import verify

BASE = ["ifttt-check", "--base-url", "http://127.0.0.1:9", "--client-id", "ifttt"]
USER = ["--username", "walter"]


@pytest.fixture
def seen(monkeypatch):
    """Record the checker instead of running checks over HTTP."""
    captured = {}

    def fake_run(checker, echo, checks=None):
        captured["secret"] = checker.client_secret
        captured["password"] = checker.password
        return 0

    monkeypatch.setattr(verify, "run_checks", fake_run)
    return captured


def test_secrets_come_from_flags(cli, seen):
    result = cli.invoke(args=[*BASE, *USER, "--client-secret", "s3", "--password", "pw"])
    assert result.exit_code == 0, result.output
    assert seen == {"secret": "s3", "password": "pw"}


def test_secrets_come_from_the_environment(cli, seen, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_CHECK_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("AUTHSERVER_CHECK_PASSWORD", "env-password")
    result = cli.invoke(args=[*BASE, *USER])
    assert result.exit_code == 0, result.output
    assert seen == {"secret": "env-secret", "password": "env-password"}


def test_secrets_come_from_stdin_secret_first(cli, seen):
    result = cli.invoke(
        args=[*BASE, *USER, "--client-secret-stdin", "--password-stdin"],
        input="stdin-secret\nstdin-password\n",
    )
    assert result.exit_code == 0, result.output
    assert seen == {"secret": "stdin-secret", "password": "stdin-password"}


def test_password_alone_from_stdin(cli, seen):
    result = cli.invoke(
        args=[*BASE, *USER, "--client-secret", "s3", "--password-stdin"], input="pw\n"
    )
    assert result.exit_code == 0, result.output
    assert seen == {"secret": "s3", "password": "pw"}


@pytest.mark.parametrize(
    ("extra", "stdin", "message"),
    [
        (["--password", "pw"], None, "missing client secret"),
        (["--client-secret", "s3"], None, "missing password"),
        (["--client-secret-stdin", "--password", "pw"], "", "no client secret on stdin"),
        (["--client-secret", "s3", "--client-secret-stdin", "--password", "pw"], "x\n", "once"),
    ],
)
def test_missing_or_doubled_secret_is_one_line_usage_error(cli, seen, extra, stdin, message):
    result = cli.invoke(args=[*BASE, *USER, *extra], input=stdin)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert seen == {}
