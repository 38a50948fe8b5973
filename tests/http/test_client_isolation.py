"""One client's or user's consent, grants and listings never spill onto another's.

Clients and users have integer primary keys in registration order; each test
registers two, so a rule that compared keys with <, <= or >= instead of == would mix
them up. Found by the sampled cosmic-ray runs (issue 19).
"""

from __future__ import annotations

from authserver.services import consents as consent_service
from tests.conftest import csrf_token_of
from tests.factories import authorize_url
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.factories import make_user


def two_clients():
    alpha, _ = make_oauth_client(name="Alpha app")
    bravo, _ = make_oauth_client(name="Bravo app")
    assert alpha.id < bravo.id
    return alpha, bravo


def assert_consent_remembered(http, login_as, user, oauth_client):
    """Authorize again: straight back to the client with a code, no consent page."""
    login_as(user)
    again = http.get(authorize_url(oauth_client.client_id))
    assert again.status_code == 302, again.get_data(as_text=True)[:200]
    assert "code=" in again.headers["Location"]


def test_consent_to_a_later_client_is_remembered_beside_an_earlier_ones(
    http, login_as, user, get_code
):
    alpha, bravo = two_clients()
    get_code(user, alpha)
    get_code(user, bravo)

    assert_consent_remembered(http, login_as, user, bravo)


def test_consent_to_an_earlier_client_is_remembered_after_a_later_ones(
    http, login_as, user, get_code
):
    alpha, bravo = two_clients()
    get_code(user, bravo)
    get_code(user, alpha)

    assert_consent_remembered(http, login_as, user, alpha)


def test_connected_apps_list_only_the_apps_the_user_approved(http, login_as, user):
    _alpha, bravo = two_clients()
    consent_service.grant_consent(user, bravo, "ifttt")

    login_as(user)
    page = http.get("/account/apps").get_data(as_text=True)
    assert "Bravo app" in page
    assert "Alpha app" not in page


def test_disconnecting_one_app_leaves_the_other_apps_tokens_working(http, login_as, user):
    alpha, bravo = two_clients()
    consent_service.grant_consent(user, alpha, "ifttt")
    consent_service.grant_consent(user, bravo, "ifttt")
    alpha_tokens, bravo_tokens = make_tokens(user, alpha), make_tokens(user, bravo)

    login_as(user)
    page = http.get("/account/apps").get_data(as_text=True)
    answer = http.post(
        "/account/apps/revoke",
        data={"csrf_token": csrf_token_of(page), "client_id": bravo.client_id},
    )
    assert answer.status_code == 302

    def user_info(tokens):
        return http.get(
            "/ifttt/v1/user/info",
            headers={"Authorization": "Bearer " + tokens["access_token"]},
        ).status_code

    assert user_info(bravo_tokens) == 401
    assert user_info(alpha_tokens) == 200


def test_client_id_with_a_nul_byte_is_not_found(cli):
    # PostgreSQL refuses NUL in text: the lookup must answer "not found" before it.
    result = cli.invoke(args=["clients", "show", "ab\x00cd"])
    assert result.exit_code == 1
    assert result.stderr == "Error: no client with id 'ab\\x00cd'\n"


def test_another_users_consent_does_not_skip_this_users_consent_page(
    http, login_as, user, oauth_client, get_code
):
    later = make_user(username="later-user")
    assert user.id < later.id
    get_code(later, oauth_client)

    login_as(user)
    page = http.get(authorize_url(oauth_client.client_id))
    assert page.status_code == 200
    assert 'name="decision"' in page.get_data(as_text=True)


def test_connected_apps_never_show_another_users_grants(http, login_as, user):
    alpha, _bravo = two_clients()
    later = make_user(username="later-user")
    assert user.id < later.id
    make_tokens(later, alpha)

    login_as(user)
    page = http.get("/account/apps").get_data(as_text=True)
    assert "Alpha app" not in page


def test_connected_apps_never_show_an_earlier_users_consent(http, login_as, user):
    alpha, _bravo = two_clients()
    consent_service.grant_consent(user, alpha, "ifttt")
    later = make_user(username="later-user")
    assert user.id < later.id

    login_as(later)
    page = http.get("/account/apps").get_data(as_text=True)
    assert "Alpha app" not in page


def test_a_later_users_consent_is_remembered_beside_an_earlier_users(
    http, login_as, user, oauth_client, get_code
):
    later = make_user(username="later-user")
    get_code(user, oauth_client)
    get_code(later, oauth_client)

    assert_consent_remembered(http, login_as, later, oauth_client)
