"""A client that fails to authenticate gets a message a human understands."""

import pytest

from tests.factories import basic_auth


@pytest.mark.parametrize("where", ["body", "basic"])
@pytest.mark.parametrize("grant_type", ["authorization_code", "refresh_token"])
def test_wrong_client_secret_is_explained_in_plain_words(http, oauth_client, where, grant_type):
    data = {"grant_type": grant_type, "code": "x", "refresh_token": "x", "redirect_uri": "x"}
    headers = {}
    if where == "body":
        data.update(client_id=oauth_client.client_id, client_secret="wrong secret")
    else:
        headers = basic_auth(oauth_client.client_id, "wrong secret")
    response = http.post("/oauth/token", data=data, headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "invalid_client"
    description = body["error_description"]
    assert description.startswith("Client authentication failed:")
    assert "client_secret is wrong" in description
    # No Python list of methods, and no "none" offered to a confidential client.
    assert "[" not in description
    assert "'" not in description
    assert "none" not in description.split()


def test_unknown_client_gets_the_same_message(http, oauth_client):
    known = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=basic_auth(oauth_client.client_id, "wrong"),
    ).get_json()
    unknown = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=basic_auth("no-such-client", "wrong"),
    ).get_json()
    assert known == unknown
