from tests.conftest import csrf_token_of
from tests.factories import authorize_url


def test_connected_apps_lists_approved_client(http, user, oauth_client, get_code):
    get_code(user, oauth_client)
    page = http.get("/account/apps")
    assert page.status_code == 200
    assert oauth_client.name in page.get_data(as_text=True)


def test_connected_apps_requires_login(http):
    response = http.get("/account/apps")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_disconnect_revokes_tokens_and_forgets_consent(
    http, user, oauth_client, client_secret, get_code, exchange
):
    tokens = exchange(
        get_code(user, oauth_client), oauth_client.client_id, client_secret
    ).get_json()
    page = http.get("/account/apps").get_data(as_text=True)
    response = http.post(
        "/account/apps/revoke",
        data={"csrf_token": csrf_token_of(page), "client_id": oauth_client.client_id},
    )
    assert response.status_code == 302
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    assert info.status_code == 401
    # Consent is forgotten: the next authorization asks again.
    again = http.get(authorize_url(oauth_client.client_id))
    assert again.status_code == 200
    assert "Allow" in again.get_data(as_text=True)


def test_disconnect_without_csrf_is_rejected(http, user, oauth_client, get_code):
    get_code(user, oauth_client)
    response = http.post("/account/apps/revoke", data={"client_id": oauth_client.client_id})
    assert response.status_code == 400
