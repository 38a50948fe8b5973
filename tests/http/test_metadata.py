from authlib.oauth2.rfc8414 import AuthorizationServerMetadata


def test_metadata_lists_every_endpoint_and_capability(http, app):
    response = http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.get_json()
    issuer = app.config["ISSUER"]
    assert body["issuer"] == issuer
    assert body["authorization_endpoint"] == issuer + "/oauth/authorize"
    assert body["token_endpoint"] == issuer + "/oauth/token"
    assert body["revocation_endpoint"] == issuer + "/oauth/revoke"
    assert body["introspection_endpoint"] == issuer + "/oauth/introspect"
    assert body["response_types_supported"] == ["code"]
    assert set(body["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert {"client_secret_basic", "client_secret_post"} <= set(
        body["token_endpoint_auth_methods_supported"]
    )
    assert body["scopes_supported"] == ["ifttt"]
    assert body["code_challenge_methods_supported"] == ["S256"]
    # Authlib's RFC 8414 validator accepts the document.
    AuthorizationServerMetadata(body).validate()
