"""Every state change a command makes is committed: seen from a connection of its own.

Each command runs in its own app context and session (tests/conftest.py), as from
a shell, so a write it never commits is rolled back when it returns.
"""

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from authserver.models import OAuth2Client
from authserver.models import TokenFamily
from authserver.models import User
from tests.factories import make_tokens

_families = TokenFamily.__table__.c
_users = User.__table__.c
_clients = OAuth2Client.__table__.c


def invoke(cli, *args):
    result = cli.invoke(args=list(args))
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def test_revoke_by_token_is_committed(cli, committed, user, oauth_client):
    body = make_tokens(user, oauth_client)
    invoke(cli, "tokens", "revoke", "--token", body["access_token"])
    assert committed(select(_families.revoke_reason)) == [("admin",)]


@pytest.mark.parametrize("selector", ["--user", "--client"])
def test_revoke_by_owner_is_committed(cli, committed, user, oauth_client, selector):
    make_tokens(user, oauth_client)
    invoke(cli, "tokens", "revoke", selector, "walter" if selector == "--user" else "ifttt")
    assert committed(select(_families.revoke_reason)) == [("admin",)]


def test_tokens_issue_is_committed(cli, committed, user, oauth_client):
    invoke(cli, "tokens", "issue", "--user", "walter", "--client", "ifttt")
    assert committed(select(_families.scope, _families.revoked_at)) == [("ifttt", None)]


def test_user_disable_and_enable_are_committed(cli, committed, user):
    states = select(_users.username, _users.disabled).order_by(_users.id)
    invoke(cli, "users", "disable", "walter")
    # Walter alone: the bystander registered before him keeps its state.
    assert committed(states) == [("bystander", False), ("walter", True)]
    invoke(cli, "users", "enable", "walter")
    assert committed(states) == [("bystander", False), ("walter", False)]


def test_client_disable_is_committed(cli, committed, oauth_client):
    invoke(cli, "clients", "disable", "ifttt")
    states = select(_clients.client_id, _clients.disabled).order_by(_clients.id)
    assert committed(states) == [("bystander-app", False), ("ifttt", True)]


def test_purge_is_committed(cli, committed, user, oauth_client):
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        make_tokens(user, oauth_client)
        invoke(cli, "tokens", "revoke", "--user", "walter")
        frozen.tick(timedelta(days=1))
        invoke(cli, "tokens", "purge")
    assert committed(select(_families.id)) == []
