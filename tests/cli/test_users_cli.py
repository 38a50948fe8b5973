import json

import click.testing
import pytest
from sqlalchemy import select

from authserver.database import db
from authserver.models import User
from authserver.services import users as user_service
from tests.factories import PASSWORD
from tests.factories import make_user

NEW_PASSWORD = "a brand new passphrase"


def run_ok(cli, *args, input=None):
    result = cli.invoke(args=list(args), input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.exception is None
    return result


def one_json_document(result):
    # json.loads refuses trailing text, so this proves "exactly one document".
    return json.loads(result.stdout)


def stored_user(username):
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.username == username))


@pytest.fixture
def terminal(monkeypatch):
    """Make the runner's stdin look like a terminal, so the command prompts."""
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True)


def test_create_with_password_stdin_prints_one_json_document(cli):
    result = run_ok(
        cli,
        "users",
        "create",
        "skyler",
        "--name",
        "Skyler White",
        "--email",
        "skyler@example.com",
        "--password-stdin",
        "--json",
        input=PASSWORD + "\n",
    )
    document = one_json_document(result)
    row = stored_user("skyler")
    assert row is not None
    assert document["id"] == row.public_id
    assert document["id"] not in {"skyler", "skyler@example.com", str(row.id)}
    assert document["username"] == "skyler"
    assert document["name"] == "Skyler White"
    assert document["email"] == "skyler@example.com"
    assert document["disabled"] is False
    assert document["created_at"].endswith("Z")
    assert "password" not in result.stdout
    assert row.password_hash not in result.stdout
    assert row.password_hash.startswith("$argon2id$")
    assert user_service.authenticate("skyler", PASSWORD) is not None


def test_create_keeps_password_spaces_and_drops_only_the_newline(cli):
    run_ok(
        cli,
        "users",
        "create",
        "saul",
        "--name",
        "Saul",
        "--password-stdin",
        input="  spaced out  \r\n",
    )
    assert user_service.authenticate("saul", "  spaced out  ") is not None
    assert user_service.authenticate("saul", "spaced out") is None


def test_create_without_json_prints_one_human_line(cli):
    result = run_ok(
        cli,
        "users",
        "create",
        "hank",
        "--name",
        "Hank",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    row = stored_user("hank")
    assert result.stdout.strip().splitlines() == [f"Created user hank (id {row.public_id})."]
    assert row.email is None


def test_create_prompts_twice_on_a_terminal(cli, terminal):
    result = run_ok(
        cli,
        "users",
        "create",
        "marie",
        "--name",
        "Marie",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert "Password: " in result.output
    assert "Repeat for confirmation: " in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert user_service.authenticate("marie", PASSWORD) is not None


def test_create_prompt_mismatch_creates_nothing(cli, terminal):
    result = cli.invoke(
        args=["users", "create", "marie", "--name", "Marie"],
        input="first one\nsecond one\n",
    )
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert stored_user("marie") is None


def test_public_ids_are_unique_and_opaque(cli):
    ids = set()
    for name in ("a1", "a2", "a3"):
        result = run_ok(
            cli,
            "users",
            "create",
            name,
            "--name",
            name,
            "--password-stdin",
            "--json",
            input=PASSWORD + "\n",
        )
        ids.add(one_json_document(result)["id"])
    assert len(ids) == 3
    assert all(len(i) >= 32 for i in ids)
    assert ids.isdisjoint({"a1", "a2", "a3"})


def test_list_json_is_one_document_sorted_by_username(cli):
    make_user(username="zed", name="Zed")
    make_user(username="amy", name="Amy", email="amy@example.com")
    document = one_json_document(run_ok(cli, "users", "list", "--json"))
    assert [u["username"] for u in document] == ["amy", "zed"]
    assert document[0]["id"] == stored_user("amy").public_id
    assert document[0]["email"] == "amy@example.com"
    assert all("password_hash" not in u for u in document)


def test_list_json_empty_is_empty_array(cli):
    assert one_json_document(run_ok(cli, "users", "list", "--json")) == []


def test_list_table_shows_each_user(cli):
    make_user(username="zed", name="Zed", disabled=True)
    make_user(username="amy", name="Amy")
    lines = run_ok(cli, "users", "list").stdout.splitlines()
    assert lines[0].split()[:2] == ["USERNAME", "ID"]
    assert [line.split()[0] for line in lines[1:]] == ["amy", "zed"]
    assert lines[2].split()[-2] == "yes"


def test_show_json_lists_connected_apps(cli, user, oauth_client, get_code):
    get_code(user, oauth_client)
    document = one_json_document(run_ok(cli, "users", "show", "walter", "--json"))
    assert document["id"] == user.public_id
    assert [a["client_id"] for a in document["connected_apps"]] == [oauth_client.client_id]


def test_show_without_json_names_the_user(cli, user):
    result = run_ok(cli, "users", "show", "walter")
    assert f"id={user.public_id}" in result.stdout
    assert "disabled=no" in result.stdout


def test_set_password_from_stdin_replaces_password_and_bumps_epoch(cli, user):
    epoch = user.session_epoch
    result = run_ok(
        cli,
        "users",
        "set-password",
        "walter",
        "--password-stdin",
        input=NEW_PASSWORD + "\n",
    )
    assert result.stdout.strip() == "Password changed for walter."
    assert user_service.authenticate("walter", PASSWORD) is None
    assert user_service.authenticate("walter", NEW_PASSWORD) is not None
    assert stored_user("walter").session_epoch == epoch + 1


def test_disable_then_enable_controls_authentication(cli, user):
    run_ok(cli, "users", "disable", "walter")
    assert stored_user("walter").disabled is True
    assert user_service.authenticate("walter", PASSWORD) is None
    run_ok(cli, "users", "enable", "walter")
    assert stored_user("walter").disabled is False
    assert user_service.authenticate("walter", PASSWORD) is not None


def test_disable_twice_is_idempotent(cli, user):
    run_ok(cli, "users", "disable", "walter")
    epoch = stored_user("walter").session_epoch
    run_ok(cli, "users", "disable", "walter")
    assert stored_user("walter").session_epoch == epoch


def test_delete_with_yes_removes_user(cli, user):
    result = run_ok(cli, "users", "delete", "walter", "--yes")
    assert "Deleted walter" in result.stdout
    assert stored_user("walter") is None


def test_delete_asks_on_a_terminal_and_keeps_user_when_declined(cli, user, terminal):
    result = cli.invoke(args=["users", "delete", "walter"], input="n\n")
    assert result.exit_code != 0
    assert stored_user("walter") is not None
    run_ok(cli, "users", "delete", "walter", input="y\n")
    assert stored_user("walter") is None


def test_username_lookup_uses_the_normalized_form(cli):
    run_ok(
        cli,
        "users",
        "create",
        "\uff57\uff41\uff4c\uff54\uff45\uff52",
        "--name",
        "W",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert stored_user("walter") is not None
    document = one_json_document(run_ok(cli, "users", "show", "walter", "--json"))
    assert document["username"] == "walter"
