import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from authserver import create_app
from authserver.database import db
from authserver.models import User
from tests.conftest import base_config
from tests.factories import PASSWORD

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def user_count():
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(User))


def create_args(username="jesse", *extra):
    return ["users", "create", username, "--name", "Jesse", "--password-stdin", *extra]


def test_create_duplicate_username_is_one_line_error(cli, user):
    before = user_count()
    result = cli.invoke(args=create_args("walter", "--json"), input=PASSWORD + "\n")
    assert_one_line_error(result, "walter", "already exists")
    assert user_count() == before


def test_create_duplicate_of_normalized_username_is_one_line_error(cli, user):
    before = user_count()
    result = cli.invoke(
        args=create_args(" \uff57\uff41\uff4c\uff54\uff45\uff52 "),
        input=PASSWORD + "\n",
    )
    assert_one_line_error(result, "already exists")
    assert user_count() == before


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (create_args("bad name"), PASSWORD + "\n", "username must not contain spaces"),
        (create_args("tab\tname"), PASSWORD + "\n", "username must not contain spaces"),
        (create_args("   "), PASSWORD + "\n", "username must not be empty"),
        (create_args("x" * 151), PASSWORD + "\n", "at most 150"),
        (create_args("jesse", "--email", "not-an-email"), PASSWORD + "\n", "email"),
        (create_args("jesse", "--email", "a@" + "b" * 400), PASSWORD + "\n", "email"),
        (
            ["users", "create", "jesse", "--name", " ", "--password-stdin"],
            PASSWORD + "\n",
            "name must not be empty",
        ),
        (create_args(), "\n", "password must not be empty"),
        (create_args(), "", "password must not be empty"),
        (create_args(), "a" * 2000 + "\n", "at most 1024"),
        (create_args(), "a\x00b\n", "NUL"),
        (create_args(), b"\xff\xfepw\n", "UTF-8"),
        (
            ["users", "create", "jesse", "--name", "J\udcff", "--password-stdin"],
            PASSWORD + "\n",
            "UTF-8",
        ),
        (["users", "create", "jesse", "--name", "Jesse"], None, "--password-stdin"),
    ],
    ids=[
        "space",
        "tab",
        "blank",
        "too-long",
        "bad-email",
        "long-email",
        "blank-name",
        "empty-password",
        "no-password",
        "long-password",
        "nul-password",
        "non-utf8-password",
        "surrogate-name",
        "no-terminal",
    ],
)
def test_create_invalid_input_is_one_line_error(cli, args, stdin, fragment):
    result = cli.invoke(args=args, input=stdin)
    assert_one_line_error(result, fragment)
    assert user_count() == 0


def user_args(length, field):
    """users create with one field exactly length characters long."""
    values = {"username": "jesse", "name": "Jesse", "email": None}
    values[field] = "a@" + "b" * (length - 2) if field == "email" else "x" * length
    args = ["users", "create", values["username"], "--name", values["name"], "--password-stdin"]
    return args + (["--email", values["email"]] if values["email"] else [])


@pytest.mark.parametrize(("field", "limit"), [("username", 150), ("name", 200), ("email", 320)])
def test_create_accepts_each_field_at_its_limit_and_refuses_one_more(cli, field, limit):
    refused = cli.invoke(args=user_args(limit + 1, field), input=PASSWORD + "\n")
    assert_one_line_error(refused, f"{field} must be at most {limit} characters")
    assert user_count() == 0
    accepted = cli.invoke(args=user_args(limit, field), input=PASSWORD + "\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert user_count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["users", "show", "nobody"],
        ["users", "show", "nobody", "--json"],
        ["users", "set-password", "nobody", "--password-stdin"],
        ["users", "disable", "nobody"],
        ["users", "enable", "nobody"],
        ["users", "delete", "nobody", "--yes"],
    ],
    ids=lambda args: "-".join(args[1:]),
)
def test_unknown_user_is_one_line_error(cli, user, args):
    before = user_count()
    result = cli.invoke(args=args, input="new password\n")
    assert_one_line_error(result, "no user named 'nobody'")
    assert user_count() == before


def test_set_password_empty_is_one_line_error_and_keeps_password(cli, user):
    from authserver.services.users import authenticate

    result = cli.invoke(args=["users", "set-password", "walter", "--password-stdin"], input="\n")
    assert_one_line_error(result, "password must not be empty")
    assert authenticate("walter", PASSWORD) is not None


def test_delete_without_yes_and_no_terminal_is_one_line_error(cli, user):
    before = user_count()
    result = cli.invoke(args=["users", "delete", "walter"])
    assert_one_line_error(result, "--yes")
    assert user_count() == before


@pytest.mark.parametrize(
    "args",
    [["users", "list"], ["users", "list", "--json"], create_args("jesse", "--json")],
    ids=["list", "list-json", "create"],
)
def test_unmigrated_database_is_one_line_error(tmp_path, monkeypatch, args):
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))
    empty = create_app(base_config("sqlite:///" + str(tmp_path / "empty.db")))
    try:
        result = empty.test_cli_runner().invoke(args=args, input=PASSWORD + "\n")
    finally:
        with empty.app_context():
            db.engine.dispose()
    line = assert_one_line_error(result, "database error", "db upgrade")
    assert "SELECT" not in line


# The real console script, as an operator runs it.


def script_env(database_url, tmp_path, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSERVER_")}
    env["AUTHSERVER_DATABASE_URL"] = database_url
    env["AUTHSERVER_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update({"AUTHSERVER_" + key: value for key, value in settings.items()})
    return env


def run_script(args, env, stdin=""):
    return subprocess.run(
        [AUTHSERVER, *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_console_script_creates_user_and_prints_one_json_document(app, database_url, tmp_path):
    env = script_env(database_url, tmp_path)
    done = run_script(create_args("gus", "--json"), env, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    document = json.loads(done.stdout)
    db.session.expire_all()
    row = db.session.scalar(select(User).where(User.username == "gus"))
    assert row is not None
    assert document["id"] == row.public_id
    # The secret key was generated in the instance folder, readable by the owner only.
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600

    again = run_script(create_args("gus", "--json"), env, stdin=PASSWORD + "\n")
    assert again.returncode == 1
    assert again.stdout == ""
    assert again.stderr.splitlines() == ["Error: user 'gus' already exists"]


@pytest.mark.parametrize(
    ("setting", "value"),
    # One process each is slow; the unit tests cover every rule, these the wiring.
    [("ACCESS_TOKEN_TTL", "abc"), ("ISSUER", "http://auth.example")],
)
def test_console_script_config_error_is_one_line_naming_variable(
    database_url, tmp_path, setting, value
):
    env = script_env(database_url, tmp_path, **{setting: value})
    done = run_script(["users", "list", "--json"], env)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    assert f"AUTHSERVER_{setting}" in lines[0]
    assert "Traceback" not in done.stderr
