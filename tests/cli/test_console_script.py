"""The `authserver` console script as an operator first meets it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from authserver.cli import build_cli

AUTHSERVER = str(Path(sys.executable).with_name("authserver"))


@pytest.fixture(autouse=True)
def _keep_log_level():
    # The console script quiets the "authserver" logger; other tests read its INFO.
    import logging

    logger = logging.getLogger("authserver")
    level = logger.level
    yield
    logger.setLevel(level)


def operator_env(tmp_path, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSERVER_", "FLASK_"))}
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


def assert_one_line(done, *fragments):
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_version_prints_authserver_version(tmp_path):
    from importlib.metadata import version

    done = run_script(["--version"], operator_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"authserver {version('authserver')}"


def test_help_lists_our_commands_and_no_flask_extras(tmp_path):
    done = run_script(["--help"], operator_env(tmp_path))
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("Commands:", 1)[1].split()
    for name in ("users", "clients", "resource-servers", "tokens", "audit", "serve", "demo", "db"):
        assert name in commands
    for flask_only in ("run", "shell", "routes"):
        assert flask_only not in commands
    for hint in ("dotenv", "--env-file", "--app", "--debug", "Flask"):
        assert hint not in done.stdout


def test_help_works_with_a_broken_setting(tmp_path):
    done = run_script(["--help"], operator_env(tmp_path, ISSUER="not a url"))
    assert done.returncode == 0, done.stderr
    assert "users" in done.stdout


def test_broken_setting_still_stops_a_command_with_one_line(tmp_path):
    done = run_script(["users", "list"], operator_env(tmp_path, ISSUER="not a url"))
    assert done.returncode == 2
    assert_one_line(done, "AUTHSERVER_ISSUER")


MISSING_PG = "postgresql://postgres@127.0.0.1:5432/authserver_no_such_database_x"
UNRESOLVABLE = "postgresql://postgres:hunter2@no-such-host.invalid:5432/authserver"


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        (MISSING_PG, ["cannot connect to", "authserver_no_such_database_x", "does not exist"]),
        (UNRESOLVABLE, ["cannot connect to", "no-such-host.invalid", "resolve"]),
        (None, ["cannot use", "Not a directory", "AUTHSERVER_DATABASE_URL"]),
        ("postgresql://postgres@127.0.0.1:notaport/x", ["AUTHSERVER_DATABASE_URL", "port"]),
    ],
    ids=["missing-database", "unresolvable-host", "sqlite-impossible-folder", "bad-port"],
)
@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["db", "current"],
        ["demo"],
        ["users", "list"],
        ["clients", "list", "--json"],
        ["resource-servers", "list"],
        ["tokens", "purge"],
        ["audit"],
    ],
    ids=lambda args: "-".join(args),
)
def test_unusable_database_url_is_one_line_on_every_command(tmp_path, url, fragments, args):
    # In-process through the real command group (a process per case is too slow);
    # the console script's wiring is checked once below.
    if url is None:
        # A SQLite file whose folder cannot exist: its parent is a regular file.
        (tmp_path / "a-file").write_text("")
        url = "sqlite:///" + str(tmp_path / "a-file" / "authserver.db")
    env = operator_env(tmp_path, DATABASE_URL=url)
    result = CliRunner().invoke(build_cli(), args, env=env, prog_name="authserver")
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "hunter2" not in result.output


def test_console_script_db_upgrade_on_missing_database_is_one_line(tmp_path):
    done = run_script(["db", "upgrade"], operator_env(tmp_path, DATABASE_URL=MISSING_PG))
    assert done.returncode == 1
    assert_one_line(done, "authserver_no_such_database_x", "AUTHSERVER_DATABASE_URL")
    assert done.stdout == ""


def invoke(args, env, stdin=None):
    return CliRunner().invoke(build_cli(), args, env=env, input=stdin, prog_name="authserver")


def test_db_upgrade_says_what_it_did(tmp_path):
    from authserver import resource_dir
    from authserver.migrations_state import head_revision

    head = head_revision(resource_dir("migrations"))
    url = "sqlite:///" + str(tmp_path / "fresh.db")
    env = operator_env(tmp_path, DATABASE_URL=url)

    first = invoke(["db", "upgrade"], env)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1].startswith(f"Created the schema in {url}: now at revision")
    assert f"revision {head}" in first.stdout

    again = invoke(["db", "upgrade"], env)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1].startswith(f"{url} is already at revision {head}")
    assert again.stdout.rstrip().endswith("nothing to do.")

    down = invoke(["db", "downgrade"], env)
    assert down.exit_code == 0, down.output
    assert down.stdout.splitlines()[-1].startswith(f"Downgraded {url} from revision {head} to")
    up = invoke(["db", "upgrade"], env)
    assert up.stdout.splitlines()[-1].startswith(f"Upgraded {url} from revision ")
    assert up.stdout.rstrip().endswith("(1 migration).")


def test_db_upgrade_hides_the_database_password(tmp_path):
    env = operator_env(tmp_path, DATABASE_URL=UNRESOLVABLE)
    result = invoke(["db", "upgrade"], env)
    assert "hunter2" not in result.output
    assert "postgresql://postgres:***@no-such-host.invalid" in result.output
