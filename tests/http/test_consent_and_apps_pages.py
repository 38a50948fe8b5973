"""What the consent and connected-apps pages tell a person."""

import json

import pytest
from freezegun import freeze_time

from authserver.services import users as user_service
from tests.conftest import csrf_token_of
from tests.factories import PASSWORD
from tests.factories import authorize_url
from tests.factories import make_tokens
from tests.factories import make_user
from tests.factories import query_of

IFTTT_TEXT = "Use your account in IFTTT Applets"


def consent_page(http, login_as, user, oauth_client, **headers):
    login_as(user)
    response = http.get(authorize_url(oauth_client.client_id), headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_consent_describes_scopes_in_plain_language(http, login_as, user, oauth_client):
    html = consent_page(http, login_as, user, oauth_client)
    assert IFTTT_TEXT in html
    assert "<code>ifttt</code>" not in html


@pytest.mark.app_config(
    SCOPE_DESCRIPTIONS=json.dumps(
        {"ifttt": {"en": "Run your Acme Applets", "de": "Deine Acme-Applets ausführen"}}
    )
)
def test_scope_descriptions_are_configurable_per_language(http, login_as, user, oauth_client):
    assert "Run your Acme Applets" in consent_page(http, login_as, user, oauth_client)
    german = consent_page(http, login_as, user, oauth_client, **{"Accept-Language": "de"})
    assert "Deine Acme-Applets ausführen" in german
    # No text for French: the English one rather than nothing.
    french = consent_page(http, login_as, user, oauth_client, **{"Accept-Language": "fr"})
    assert "Run your Acme Applets" in french


def test_scope_without_description_is_named(http, login_as, user):
    from tests.factories import make_oauth_client

    oauth_client, _ = make_oauth_client(scopes=["ifttt", "lights"])
    login_as(user)
    html = http.get(authorize_url(oauth_client.client_id, scope="ifttt lights")).get_data(
        as_text=True
    )
    assert "Use the access called “lights”" in html


def test_consent_links_connected_apps_and_switch_account(http, login_as, user, oauth_client):
    html = consent_page(http, login_as, user, oauth_client)
    assert '<a href="/account/apps">Connected apps</a>' in html
    assert "Not you? Switch account" in html
    assert 'href="/login?next=' in html
    assert "switch=1" in html


def test_switch_account_signs_in_someone_else_and_returns_to_consent(
    http, login_as, user, oauth_client
):
    make_user(username="jesse", name="Jesse Pinkman")
    url = authorize_url(oauth_client.client_id)
    login_as(user)
    consent = http.get(url).get_data(as_text=True)
    switch = consent.split("Switch account")[0].rsplit('href="', 1)[1].split('"')[0]
    switch = switch.replace("&amp;", "&")
    form = http.get(switch)
    # Signed in already, yet shown the form (not bounced back to the consent page).
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    assert "You are signed in as Walter White" in html
    signed_in = http.post(
        "/login",
        data={
            "csrf_token": csrf_token_of(html),
            "username": "jesse",
            "password": PASSWORD,
            "next": query_of(switch)["next"],
        },
    )
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == url
    again = http.get(url).get_data(as_text=True)
    assert "Jesse Pinkman" in again
    assert "Walter White" not in again


def test_login_without_switch_still_continues_when_signed_in(http, login_as, user):
    login_as(user)
    response = http.get("/login?next=/account/apps")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/apps"


def test_connected_apps_show_dates_descriptions_and_last_activity(
    http, login_as, user, oauth_client, get_code, client_secret, exchange, refresh
):
    with freeze_time("2030-03-12T09:00:00+00:00") as frozen:
        tokens = exchange(
            get_code(user, oauth_client), oauth_client.client_id, client_secret
        ).get_json()
        frozen.tick(3 * 3600)
        html = http.get("/account/apps").get_data(as_text=True)
        assert "Connected on March 12, 2030" in html
        assert IFTTT_TEXT in html
        assert "Last active 3 hours ago" in html
        assert '<time datetime="2030-03-12T09:00:00Z">' in html

        # A refresh is the app using its access again.
        frozen.tick(2 * 3600)
        assert (
            refresh(tokens["refresh_token"], oauth_client.client_id, client_secret).status_code
            == 200
        )
        frozen.tick(30 * 60)
        html = http.get("/account/apps").get_data(as_text=True)
        assert "Last active 30 minutes ago" in html

        german = http.get("/account/apps", headers={"Accept-Language": "de"}).get_data(as_text=True)
        assert "Verbunden am 12. März 2030" in german
        assert "Zuletzt aktiv vor 30 Minuten" in german
        japanese = http.get("/account/apps", headers={"Accept-Language": "ja"}).get_data(
            as_text=True
        )
        assert "2030年3月12日 に連携" in japanese


def test_connected_app_without_tokens_yet_says_so(http, login_as, user, oauth_client):
    from authserver.services.consents import grant_consent

    grant_consent(user, oauth_client, "ifttt")
    login_as(user)
    assert "Not active yet" in http.get("/account/apps").get_data(as_text=True)


def test_last_activity_ignores_revoked_grants(http, login_as, user, oauth_client):
    from authserver.services.revocation import revoke_grants

    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        make_tokens(user, oauth_client)
        frozen.tick(3600)
        make_tokens(user, oauth_client)
        frozen.tick(3600)
        login_as(user)
        assert "Last active 1 hour ago" in http.get("/account/apps").get_data(as_text=True)
        revoke_grants(user=user, oauth_client=oauth_client, reason="admin")
        assert "Last active" not in http.get("/account/apps").get_data(as_text=True)


def test_last_activity_counts_only_the_users_own_grants(
    http, login_as, user, oauth_client, client_secret, refresh
):
    """An earlier grant of another user (a lower family id), used later, is not this one's."""
    bystander = user_service.require_user("bystander")
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        theirs = make_tokens(bystander, oauth_client)
        frozen.tick(3600)
        make_tokens(user, oauth_client)
        frozen.tick(3600)
        used = refresh(theirs["refresh_token"], oauth_client.client_id, client_secret)
        assert used.status_code == 200
        frozen.tick(3600)
        login_as(user)
        html = http.get("/account/apps").get_data(as_text=True)
        assert "Last active 2 hours ago" in html
        assert '<time datetime="2030-01-01T01:00:00Z">' in html
        login_as(bystander)
        html = http.get("/account/apps").get_data(as_text=True)
        assert "Last active 1 hour ago" in html
        assert '<time datetime="2030-01-01T02:00:00Z">' in html


def test_switching_account_ends_the_previous_login_on_the_server(http, user):
    make_user(username="jesse", name="Jesse Pinkman")

    def sign_in(username):
        form = http.get("/login?switch=1").get_data(as_text=True)
        response = http.post(
            "/login",
            data={"csrf_token": csrf_token_of(form), "username": username, "password": PASSWORD},
        )
        assert response.status_code == 302

    sign_in("walter")
    walters_cookie = http.get_cookie("authserver_session").value
    sign_in("jesse")
    # Someone who copied Walter's cookie before the switch gets nothing with it.
    http.set_cookie("authserver_session", walters_cookie)
    assert http.get("/account/apps").status_code == 302


def test_consent_to_a_wider_scope_keeps_the_new_scope(app, user):
    """Approving more than before stores the new scope beside the rows already there."""
    from authserver.services import consents as consent_service
    from tests.factories import make_oauth_client

    oauth_client, _ = make_oauth_client(scopes=["ifttt", "profile"])
    consent_service.grant_consent(user, oauth_client, "ifttt")
    consent_service.grant_consent(user, oauth_client, "ifttt profile")
    assert consent_service.has_consent(user, oauth_client, "ifttt profile")
