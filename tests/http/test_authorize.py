from urllib.parse import urlsplit

import pytest

from tests.conftest import csrf_token_of
from tests.factories import IFTTT_REDIRECT
from tests.factories import STAGING_REDIRECT
from tests.factories import authorize_url
from tests.factories import make_oauth_client
from tests.factories import pkce_pair
from tests.factories import query_of


def test_anonymous_user_is_sent_to_login_after_request_is_validated(http, oauth_client):
    response = http.get(authorize_url(oauth_client.client_id, state="abc"))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert "next=" in location.query


def test_unknown_client_gets_error_page_not_redirect(http, user, login_as):
    login_as(user)
    response = http.get(authorize_url("no-such-client"))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "text/html" in response.content_type


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/authorize",
        IFTTT_REDIRECT + "/",
        IFTTT_REDIRECT + "?x=1",
        IFTTT_REDIRECT.upper(),
        "https://ifttt.com/channels/acme/authorize#frag",
        "http://ifttt.com/channels/acme/authorize",
    ],
)
def test_unregistered_redirect_uri_gets_error_page(http, oauth_client, redirect_uri):
    # Checked before the login page: an anonymous visitor sees the error too.
    response = http.get(authorize_url(oauth_client.client_id, redirect_uri=redirect_uri))
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_consent_page_names_client_and_scope(http, user, login_as, oauth_client):
    login_as(user)
    response = http.get(authorize_url(oauth_client.client_id))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert oauth_client.name in page
    assert "ifttt" in page
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_allow_redirects_with_code_and_same_state(http, user, login_as, oauth_client):
    login_as(user)
    url = authorize_url(oauth_client.client_id, state="xyz-123")
    page = http.get(url)
    response = http.post(
        url, data={"csrf_token": csrf_token_of(page.get_data(as_text=True)), "decision": "allow"}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(IFTTT_REDIRECT + "?")
    query = query_of(location)
    assert query["state"] == "xyz-123"
    assert len(query["code"]) >= 43


def test_second_registered_redirect_uri_is_accepted(http, user, login_as, oauth_client):
    login_as(user)
    url = authorize_url(oauth_client.client_id, redirect_uri=STAGING_REDIRECT)
    page = http.get(url)
    response = http.post(
        url, data={"csrf_token": csrf_token_of(page.get_data(as_text=True)), "decision": "allow"}
    )
    assert response.headers["Location"].startswith(STAGING_REDIRECT + "?")


def test_deny_redirects_with_access_denied_and_state(http, user, login_as, oauth_client):
    login_as(user)
    url = authorize_url(oauth_client.client_id, state="s1")
    page = http.get(url)
    response = http.post(
        url, data={"csrf_token": csrf_token_of(page.get_data(as_text=True)), "decision": "deny"}
    )
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "access_denied"
    assert query["state"] == "s1"
    assert "code" not in query


def test_consent_post_without_csrf_is_rejected(http, user, login_as, oauth_client):
    login_as(user)
    response = http.post(authorize_url(oauth_client.client_id), data={"decision": "allow"})
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_consent_is_remembered(http, user, login_as, oauth_client, get_code):
    get_code(user, oauth_client)
    response = http.get(authorize_url(oauth_client.client_id, state="again"))
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["state"] == "again"
    assert "code" in query


def test_implicit_grant_is_refused(http, user, login_as, oauth_client):
    login_as(user)
    response = http.get(authorize_url(oauth_client.client_id, response_type="token", state="s"))
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == "s"


def test_unknown_scope_is_refused_with_redirect(http, user, login_as, oauth_client):
    login_as(user)
    response = http.get(authorize_url(oauth_client.client_id, scope="ifttt admin", state="s"))
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_scope"


def test_plain_pkce_is_refused(http, user, login_as, oauth_client):
    login_as(user)
    response = http.get(
        authorize_url(
            oauth_client.client_id, code_challenge="a" * 43, code_challenge_method="plain"
        )
    )
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_public_client_must_send_pkce(http, user, login_as):
    public, _ = make_oauth_client(public=True)
    login_as(user)
    response = http.get(authorize_url(public.client_id))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"
    _, challenge = pkce_pair()
    response = http.get(
        authorize_url(public.client_id, code_challenge=challenge, code_challenge_method="S256")
    )
    assert response.status_code == 200


def test_duplicate_parameter_is_refused(http, user, login_as, oauth_client):
    login_as(user)
    url = authorize_url(oauth_client.client_id) + "&state=second"
    response = http.get(url)
    assert response.status_code == 400
    assert "Location" not in response.headers
