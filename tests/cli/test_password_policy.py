"""The password policy: minimum length, not the username, not a common password."""

import gzip
from importlib.resources import files

import pytest

from authserver.services.users import authenticate
from authserver.services.users import common_passwords
from tests.cli.test_cli_errors import assert_one_line_error
from tests.cli.test_cli_errors import create_args
from tests.cli.test_cli_errors import user_count
from tests.factories import PASSWORD


def test_shipped_list_is_a_real_common_password_list():
    raw = files("authserver").joinpath("data", "common-passwords.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode().split()
    assert len(lines) > 15000
    assert lines[:4] == ["123456", "123456789", "qwerty", "password"]
    assert len(common_passwords()) == len(set(lines))


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short pw", "at least 12 characters"),
        ("elevenchars", "at least 12 characters"),
        ("jesse.pinkman", "must not be the username"),
        ("JESSE.PINKMAN", "must not be the username"),
        ("jesse@example.com", "must not be the username or e-mail"),
        ("qazwsxedcrfv", "most common passwords"),
        ("1q2w3e4r5t6y", "most common passwords"),
        ("Password1234", "most common passwords"),
    ],
)
def test_create_refuses_a_weak_password(cli, password, fragment):
    args = [
        "users",
        "create",
        "jesse.pinkman",
        "--name",
        "Jesse",
        "--email",
        "jesse@example.com",
        "--password-stdin",
    ]
    result = cli.invoke(args=args, input=password + "\n")
    assert_one_line_error(result, fragment)
    assert user_count() == 0


def test_set_password_refuses_a_common_password_and_keeps_the_old_one(cli, user):
    result = cli.invoke(
        args=["users", "set-password", "walter", "--password-stdin"], input="qwertyuiop123\n"
    )
    assert_one_line_error(result, "most common passwords")
    assert authenticate("walter", PASSWORD) is not None


def test_a_twelve_character_password_is_enough(cli):
    result = cli.invoke(args=create_args("jesse"), input="tq8-vd3m-zk2\n")
    assert result.exit_code == 0, result.output
    assert authenticate("jesse", "tq8-vd3m-zk2") is not None


@pytest.mark.app_config(MIN_PASSWORD_LENGTH=20)
def test_minimum_length_is_configurable(cli):
    result = cli.invoke(args=create_args("jesse"), input="nineteen characters\n")
    assert_one_line_error(result, "at least 20 characters")
    ok = cli.invoke(args=create_args("jesse"), input="twenty characters ok\n")
    assert ok.exit_code == 0, ok.output


@pytest.mark.app_config(MIN_PASSWORD_LENGTH=4)
def test_common_list_still_applies_below_the_default_length(cli):
    result = cli.invoke(args=create_args("jesse"), input="dragon\n")
    assert_one_line_error(result, "most common passwords")


def test_existing_short_passwords_still_log_in(app, http):
    """The policy applies to new passwords; nobody is locked out by an upgrade."""
    from authserver.database import db
    from authserver.models import User
    from authserver.security import hash_password

    db.session.add(
        User(username="old", name="Old", password_hash=hash_password("short"), email=None)
    )
    db.session.commit()
    assert authenticate("old", "short") is not None
