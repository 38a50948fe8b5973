import hashlib

from freezegun import freeze_time
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from authserver.database import db
from authserver.models import AccessToken
from authserver.models import AuthorizationCode
from authserver.models import RefreshToken
from authserver.models import TokenFamily
from tests.factories import IFTTT_REDIRECT
from tests.factories import STAGING_REDIRECT
from tests.factories import basic_auth
from tests.factories import make_oauth_client
from tests.factories import pkce_pair

FROZEN = "2030-01-01T00:00:00+00:00"


def test_code_exchange_as_ifttt_does(user, oauth_client, client_secret, get_code, exchange):
    code = get_code(user, oauth_client)
    response = exchange(code, oauth_client.client_id, client_secret)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "ifttt"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 43
    assert len(body["refresh_token"]) >= 43


def test_code_exchange_with_basic_auth(http, user, oauth_client, client_secret, get_code):
    code = get_code(user, oauth_client)
    response = http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": IFTTT_REDIRECT},
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 200, response.get_json()


def test_wrong_secret_is_invalid_client_401(user, oauth_client, get_code, exchange):
    code = get_code(user, oauth_client)
    response = exchange(code, oauth_client.client_id, "wrong-secret")
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in response.headers


def test_invalid_client_with_basic_auth_gets_the_servers_basic_challenge(
    http, user, oauth_client, get_code
):
    code = get_code(user, oauth_client)
    response = http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": IFTTT_REDIRECT},
        headers=basic_auth(oauth_client.client_id, "wrong-secret"),
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers.getlist("WWW-Authenticate") == [
        'Basic realm="authserver", error="invalid_client"'
    ]


def test_invalid_grant_with_basic_auth_carries_no_basic_challenge(
    http, oauth_client, client_secret
):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": "not-a-code",
            "redirect_uri": IFTTT_REDIRECT,
        },
        headers=basic_auth(oauth_client.client_id, client_secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert "WWW-Authenticate" not in response.headers


def test_unknown_grant_type(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_missing_code_is_invalid_request(http, oauth_client, client_secret):
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_bogus_code_is_invalid_grant(oauth_client, client_secret, exchange):
    response = exchange("not-a-code", oauth_client.client_id, client_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_code(user, oauth_client, client_secret, get_code, exchange):
    code = get_code(user, oauth_client)
    response = exchange(
        code,
        oauth_client.client_id,
        client_secret,
        redirect_uri="https://ifttt.com/channels/acme_staging/authorize",
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_code_of_another_client_is_invalid_grant(user, oauth_client, get_code, exchange):
    other, other_secret = make_oauth_client()
    code = get_code(user, oauth_client)
    response = exchange(code, other.client_id, other_secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_code_replay_fails_and_revokes_issued_tokens(
    http, user, oauth_client, client_secret, get_code, exchange
):
    code = get_code(user, oauth_client)
    first = exchange(code, oauth_client.client_id, client_secret).get_json()
    replay = exchange(code, oauth_client.client_id, client_secret)
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": "Bearer " + first["access_token"]}
    )
    assert info.status_code == 401
    family = db.session.scalars(select(TokenFamily)).one()
    assert family.revoke_reason == "code_replay"


def test_code_expires_at_its_lifetime(user, oauth_client, client_secret, get_code, exchange):
    with freeze_time(FROZEN) as frozen:
        code = get_code(user, oauth_client)
        frozen.tick(599)
        assert exchange(code, oauth_client.client_id, client_secret).status_code == 200
        late = get_code(user, oauth_client)
        frozen.tick(600)
        response = exchange(late, oauth_client.client_id, client_secret)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_grant"


def test_tokens_and_codes_are_hashed_at_rest(user, oauth_client, client_secret, get_code, exchange):
    code = get_code(user, oauth_client)
    body = exchange(code, oauth_client.client_id, client_secret).get_json()
    access = db.session.scalars(select(AccessToken)).one()
    refresh = db.session.scalars(select(RefreshToken)).one()
    stored_code = db.session.scalars(select(AuthorizationCode)).one()
    assert access.token_hash == hashlib.sha256(body["access_token"].encode()).hexdigest()
    assert refresh.token_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    assert stored_code.code_hash == hashlib.sha256(code.encode()).hexdigest()
    for row in (access, refresh, stored_code):
        for value in vars(row).values():
            assert value not in (body["access_token"], body["refresh_token"], code)


def test_pkce_verifier_required_when_challenge_was_sent(
    user, oauth_client, client_secret, get_code, exchange
):
    verifier, challenge = pkce_pair()
    code = get_code(user, oauth_client, code_challenge=challenge, code_challenge_method="S256")
    missing = exchange(code, oauth_client.client_id, client_secret)
    assert missing.status_code == 400
    code = get_code(user, oauth_client, code_challenge=challenge, code_challenge_method="S256")
    wrong = exchange(code, oauth_client.client_id, client_secret, code_verifier="x" * 43)
    assert wrong.get_json()["error"] == "invalid_grant"
    code = get_code(user, oauth_client, code_challenge=challenge, code_challenge_method="S256")
    ok = exchange(code, oauth_client.client_id, client_secret, code_verifier=verifier)
    assert ok.status_code == 200


def test_public_client_with_pkce(user, get_code, exchange):
    public, _ = make_oauth_client(public=True)
    verifier, challenge = pkce_pair()
    code = get_code(user, public, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(code, public.client_id, None, code_verifier=verifier)
    assert response.status_code == 200, response.get_json()


@__import__("pytest").mark.app_config(ACCESS_TOKEN_TTL=0)
def test_access_token_ttl_zero_omits_expires_in(
    user, oauth_client, client_secret, get_code, exchange
):
    code = get_code(user, oauth_client)
    body = exchange(code, oauth_client.client_id, client_secret).get_json()
    assert "expires_in" not in body
    assert db.session.scalars(select(AccessToken)).one().expires_at is None


def test_duplicate_parameter_on_token_endpoint(http, user, oauth_client, client_secret, get_code):
    code = get_code(user, oauth_client)
    response = http.post(
        "/oauth/token",
        data=MultiDict(
            [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code", code),
                ("client_id", oauth_client.client_id),
                ("client_secret", client_secret),
                ("redirect_uri", IFTTT_REDIRECT),
            ]
        ),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_parameter_in_both_query_and_body_is_refused(
    http, user, oauth_client, client_secret, get_code
):
    # RFC 6749 §3.1: once is once across the query string and the body too.
    code = get_code(user, oauth_client)
    response = http.post(
        f"/oauth/token?code={code}",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": oauth_client.client_id,
            "client_secret": client_secret,
            "redirect_uri": IFTTT_REDIRECT,
        },
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "code" in response.get_json()["error_description"]


def exchange_without_redirect_uri(http, code, client_id, secret, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "client_secret": secret,
        **extra,
    }
    return http.post("/oauth/token", data=data)


def test_code_requested_without_redirect_uri_is_redeemed_without_it(http, user, get_code):
    # RFC 6749 §4.1.3: redirect_uri is required at the token endpoint only when the
    # authorization request included it.
    single, secret = make_oauth_client(redirect_uris=[IFTTT_REDIRECT])
    code = get_code(user, single, redirect_uri=None)
    response = exchange_without_redirect_uri(http, code, single.client_id, secret)
    assert response.status_code == 200, response.get_json()
    assert db.session.scalars(select(AuthorizationCode)).one().redirect_uri is None


def test_code_requested_without_redirect_uri_accepts_the_uri_it_was_sent_to(http, user, get_code):
    single, secret = make_oauth_client(redirect_uris=[IFTTT_REDIRECT])
    code = get_code(user, single, redirect_uri=None)
    response = exchange_without_redirect_uri(
        http, code, single.client_id, secret, redirect_uri=IFTTT_REDIRECT
    )
    assert response.status_code == 200, response.get_json()


def test_code_requested_without_redirect_uri_refuses_another_uri(http, user, get_code):
    single, secret = make_oauth_client(redirect_uris=[IFTTT_REDIRECT])
    code = get_code(user, single, redirect_uri=None)
    response = exchange_without_redirect_uri(
        http, code, single.client_id, secret, redirect_uri=STAGING_REDIRECT
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_code_requested_with_redirect_uri_requires_it_at_token(
    http, user, oauth_client, client_secret, get_code
):
    code = get_code(user, oauth_client, redirect_uri=IFTTT_REDIRECT)
    missing = exchange_without_redirect_uri(http, code, oauth_client.client_id, client_secret)
    assert missing.status_code == 400
    assert missing.get_json()["error"] == "invalid_grant"
    # The failed attempt did not consume the code: the identical URI still redeems it.
    ok = exchange_without_redirect_uri(
        http, code, oauth_client.client_id, client_secret, redirect_uri=IFTTT_REDIRECT
    )
    assert ok.status_code == 200


def test_single_uri_client_code_with_redirect_uri_requires_it_at_token(http, user, get_code):
    single, secret = make_oauth_client(redirect_uris=[IFTTT_REDIRECT])
    code = get_code(user, single, redirect_uri=IFTTT_REDIRECT)
    missing = exchange_without_redirect_uri(http, code, single.client_id, secret)
    assert missing.status_code == 400
    assert missing.get_json()["error"] == "invalid_grant"
