import logging
import re
from urllib.parse import urlsplit

import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy import select

from authserver.database import db
from authserver.models import UserSession
from authserver.services import users as user_service
from tests.conftest import csrf_token_of
from tests.conftest import log_in
from tests.factories import PASSWORD
from tests.factories import make_user

APPS = "/account/apps"


def login_page_token(http, path="/login"):
    page = http.get(path)
    assert page.status_code == 200
    return csrf_token_of(page.get_data(as_text=True))


def post_login(http, username, password, **extra):
    data = {
        "csrf_token": login_page_token(http),
        "username": username,
        "password": password,
    }
    data.update(extra)
    return http.post("/login", data=data)


def location_path(response):
    parts = urlsplit(response.headers["Location"])
    assert parts.scheme in ("", "http", "https")
    assert parts.netloc in ("", "localhost")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def session_user_id(http):
    with http.session_transaction() as session:
        return session.get("_user_id")


def without_token(html):
    return re.sub(r'name="csrf_token"[^>]*>', "", html)


def test_login_page_renders_form_with_csrf_token(http):
    page = http.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert csrf_token_of(html)
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert "<script" not in html
    # No CDN: every stylesheet, image or script is our own, so the page works offline.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert 'href="/static/style.css"' in html
    assert 'name="viewport"' in html  # mobile-friendly layout


def test_login_succeeds_and_sets_session(http, user):
    response = post_login(http, "walter", PASSWORD)
    assert response.status_code == 302
    assert location_path(response) == APPS
    assert session_user_id(http) == user.get_id()
    assert http.get(APPS).status_code == 200


def test_login_redirects_to_safe_next(http, user):
    target = "/oauth/authorize?client_id=ifttt&response_type=code&state=a%2Fb"
    response = post_login(http, "walter", PASSWORD, next=target)
    assert response.status_code == 302
    assert location_path(response) == target


def test_login_page_keeps_safe_next_in_form(http):
    html = http.get("/login?next=/oauth/authorize%3Fstate%3Dx").get_data(as_text=True)
    assert 'value="/oauth/authorize?state=x"' in html


@pytest.mark.parametrize(
    "evil",
    [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "http://evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_login_ignores_open_redirect_in_next(http, user, evil):
    response = post_login(http, "walter", PASSWORD, next=evil)
    assert response.status_code == 302
    assert location_path(response) == APPS
    assert "evil" not in response.headers["Location"]


@pytest.mark.parametrize("evil", ["//evil.example/x", "/\\evil.example", "https://evil.example"])
def test_logged_in_visit_ignores_open_redirect_in_next(http, user, login_as, evil):
    login_as(user)
    page = http.get("/login", query_string={"next": evil})
    assert page.status_code == 200
    assert "evil" not in page.get_data(as_text=True)


def test_logged_in_visit_follows_safe_next(http, user, login_as):
    login_as(user)
    response = http.get("/login?next=/account/apps")
    assert response.status_code == 302
    assert location_path(response) == APPS


def test_login_fails_with_one_message_for_wrong_password_and_unknown_user(http, user):
    wrong = post_login(http, "walter", "not the password")
    unknown = post_login(http, "heisenberg", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    wrong_html = without_token(wrong.get_data(as_text=True))
    unknown_html = without_token(unknown.get_data(as_text=True))
    assert "Invalid username or password." in wrong_html
    # Same page, byte for byte, apart from the echoed username and the CSRF token.
    assert wrong_html.replace("walter", "NAME") == unknown_html.replace("heisenberg", "NAME")
    assert session_user_id(http) is None


def test_login_refused_for_disabled_user(http):
    make_user(username="jesse", name="Jesse", disabled=True)
    response = post_login(http, "jesse", PASSWORD)
    assert response.status_code == 401
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert session_user_id(http) is None


def test_login_failure_is_logged_without_password(http, user, caplog):
    with caplog.at_level(logging.INFO, logger="authserver"):
        post_login(http, "walter", "hunter2-secret")
    failures = [r for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failures) == 1
    assert "walter" in failures[0].getMessage()
    assert "hunter2-secret" not in caplog.text


def test_login_rejects_post_without_csrf_token(http, user):
    http.get("/login")
    response = http.post("/login", data={"username": "walter", "password": PASSWORD})
    assert response.status_code == 400
    assert session_user_id(http) is None


def test_login_rejects_post_with_bad_csrf_token(http, user):
    token = login_page_token(http)
    response = http.post(
        "/login",
        data={
            "csrf_token": token[:-4] + "AAAA",
            "username": "walter",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 400
    assert session_user_id(http) is None


def test_login_rejects_csrf_token_of_another_session(app, http, user):
    other = app.test_client()
    token = login_page_token(other)
    http.get("/login")
    response = http.post(
        "/login", data={"csrf_token": token, "username": "walter", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert session_user_id(http) is None


def test_login_with_empty_fields_is_400_with_message(http, user):
    response = post_login(http, "walter", "")
    assert response.status_code == 400
    assert "Please fill in both fields." in response.get_data(as_text=True)
    assert session_user_id(http) is None


def test_session_cookie_is_httponly_lax_and_not_secure_on_http_issuer(http, user):
    response = post_login(http, "walter", PASSWORD)
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("authserver_session=")
    )
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags


@pytest.mark.app_config(ISSUER="https://auth.example")
def test_session_cookie_is_secure_when_issuer_is_https(http, user):
    response = post_login(http, "walter", PASSWORD)
    assert response.status_code == 302
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("authserver_session=")
    )
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "secure" in flags
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert session_user_id(http) == user.get_id()


def test_login_renews_session_contents(http, user):
    login_page_token(http)
    with http.session_transaction() as session:
        session["planted"] = "by-attacker"
        old_csrf = session["csrf_token"]
    response = post_login(http, "walter", PASSWORD)
    assert response.status_code == 302
    with http.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") != old_csrf
        assert session["_user_id"] == user.get_id()


def test_password_change_ends_existing_sessions(http, user):
    post_login(http, "walter", PASSWORD)
    assert http.get(APPS).status_code == 200
    user_service.set_password("walter", "a new password")
    response = http.get(APPS)
    assert response.status_code == 302
    assert location_path(response).startswith("/login")
    assert post_login(http, "walter", PASSWORD).status_code == 401
    assert post_login(http, "walter", "a new password").status_code == 302


def test_disable_ends_existing_sessions(http, user):
    post_login(http, "walter", PASSWORD)
    assert http.get(APPS).status_code == 200
    user_service.set_disabled("walter", disabled=True)
    assert http.get(APPS).status_code == 302
    user_service.set_disabled("walter", disabled=False)
    # Re-enabling does not resurrect the old session: the epoch moved on.
    assert http.get(APPS).status_code == 302


def test_logout_get_explains_and_does_not_sign_out(http, user, login_as):
    login_as(user)
    page = http.get("/logout")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sign out of authserver?" in html
    assert 'method="post" action="/logout"' in html
    assert 'name="csrf_token"' in html
    # A link (or an image tag on another site) must not sign anyone out.
    assert http.get(APPS).status_code == 200


def test_logout_get_when_signed_out_offers_sign_in(http):
    page = http.get("/logout")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "You are signed out" in html
    assert 'href="/login"' in html


def test_logout_rejects_post_without_csrf_token(http, user, login_as):
    login_as(user)
    http.get(APPS)
    assert http.post("/logout").status_code == 400
    assert http.get(APPS).status_code == 200


def test_logout_with_csrf_token_ends_session(http, user):
    post_login(http, "walter", PASSWORD)
    page = http.get(APPS)
    token = csrf_token_of(page.get_data(as_text=True))
    response = http.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert location_path(response) == "/login"
    assert session_user_id(http) is None
    assert http.get(APPS).status_code == 302


def _argon2_parameters(encoded):
    # "$argon2id$v=19$m=65536,t=3,p=4$salt$hash" → the algorithm and cost part.
    return encoded.split("$")[1:4]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("walter", PASSWORD),
        ("walter", "wrong"),
        ("heisenberg", "wrong"),
        ("jesse", PASSWORD),
        ("x" * 151, "wrong"),
    ],
    ids=[
        "right",
        "wrong-password",
        "unknown-user",
        "disabled-user",
        "overlong-username",
    ],
)
def test_login_runs_exactly_one_argon2_verification(http, user, verify_calls, username, password):
    make_user(username="jesse", name="Jesse", disabled=True)
    login_page_token(http)
    http.post(
        "/login",
        data={
            "csrf_token": login_page_token(http),
            "username": username,
            "password": password,
        },
    )
    assert len(verify_calls) <= 1
    # The form caps the username at 150; a longer one never reaches the check at all.
    expected = 0 if len(username) > 150 else 1
    assert len(verify_calls) == expected
    if verify_calls:
        # The dummy hash for unknown users costs what a real one costs.
        assert _argon2_parameters(verify_calls[0]) == _argon2_parameters(user.password_hash)


def test_authenticate_unknown_user_verifies_against_real_cost_hash(app, user, verify_calls):
    assert user_service.authenticate("nobody", "whatever") is None
    assert user_service.authenticate("walter", "whatever") is None
    assert len(verify_calls) == 2
    assert verify_calls[0] != user.password_hash
    assert _argon2_parameters(verify_calls[0]) == _argon2_parameters(verify_calls[1])


def session_cookie_of(http):
    cookie = http.get_cookie("authserver_session")
    assert cookie is not None
    return cookie.value


def test_session_cookie_copied_before_logout_is_dead_after_it(app, http, user):
    post_login(http, "walter", PASSWORD)
    page = http.get(APPS)
    assert page.status_code == 200
    copied = session_cookie_of(http)
    token = csrf_token_of(page.get_data(as_text=True))
    assert http.post("/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("authserver_session", copied)
    response = thief.get(APPS)
    assert response.status_code == 302
    assert location_path(response).startswith("/login")


def test_logout_keeps_the_other_devices_logged_in(app, http, user):
    phone = app.test_client()
    post_login(phone, "walter", PASSWORD)
    post_login(http, "walter", PASSWORD)
    page = http.get(APPS)
    token = csrf_token_of(page.get_data(as_text=True))
    assert http.post("/logout", data={"csrf_token": token}).status_code == 302
    assert http.get(APPS).status_code == 302
    assert phone.get(APPS).status_code == 200


def test_login_ends_on_the_server_after_its_lifetime(http, user):
    # The cookie is re-signed on every page (sliding); the server-side login is not.
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        post_login(http, "walter", PASSWORD)
        frozen.tick(12 * 3600 - 1)
        assert http.get(APPS).status_code == 200
        frozen.tick(1)
        response = http.get(APPS)
        assert response.status_code == 302
        assert location_path(response).startswith("/login")


def test_login_stays_ended_after_its_lifetime_while_the_cookie_is_fresh(http, user):
    # A page seen an hour before the end re-signs the cookie for another twelve hours;
    # the login still ends at its own time, and stays ended after it.
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        post_login(http, "walter", PASSWORD)
        frozen.tick(11 * 3600)
        assert http.get(APPS).status_code == 200
        frozen.tick(2 * 3600)
        response = http.get(APPS)
        assert response.status_code == 302
        assert location_path(response).startswith("/login")


def test_password_change_ends_sessions_when_the_epoch_gains_a_digit(http, user):
    """The epoch is compared as text, where "10" sorts before "9": only equality will do."""
    for n in range(9):
        user_service.set_password("walter", f"blue crystal number {n}")
    post_login(http, "walter", "blue crystal number 8")
    assert http.get(APPS).status_code == 200
    user_service.set_password("walter", "a new password")
    response = http.get(APPS)
    assert response.status_code == 302
    assert location_path(response).startswith("/login")


def test_oldest_logins_end_past_the_per_user_cap(app, user):
    """Twenty logins of one user stay live (phones, browsers); the 21st ends the oldest."""
    browsers = [app.test_client() for _ in range(21)]
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        for browser in browsers:
            log_in(browser, user)
            frozen.tick(1)
        assert browsers[0].get(APPS).status_code == 302
        assert all(browser.get(APPS).status_code == 200 for browser in browsers[1:])
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 20


def test_login_deletes_the_users_ended_logins_and_no_one_elses(app, user, committed):
    """Logins that ended (a second ago, or this very second) go at the user's next login."""
    skyler = make_user(username="skyler")
    with freeze_time("2030-01-01T00:00:00+00:00") as frozen:
        log_in(app.test_client(), user)
        log_in(app.test_client(), skyler)
        frozen.tick(1)
        log_in(app.test_client(), user)
        frozen.tick(12 * 3600)
        assert post_login(app.test_client(), "walter", PASSWORD).status_code == 302
    rows = committed(select(UserSession.user_id).order_by(UserSession.id))
    assert [user_id for (user_id,) in rows] == [skyler.id, user.id]


def test_login_succeeds_with_a_username_of_the_longest_allowed_length(http):
    longest = "u" * 150
    user = make_user(username=longest)
    response = post_login(http, longest, PASSWORD)
    assert response.status_code == 302
    assert session_user_id(http) == user.get_id()
