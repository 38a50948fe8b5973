import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import csrf_token_of
from ..factories import PASSWORD

METRICS_TOKEN = "metrics-token-" + "7" * 24
WITH_TOKEN = pytest.mark.app_config(METRICS_TOKEN=METRICS_TOKEN)
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(autouse=True)
def _single_process_registry(monkeypatch):
    # These tests read the in-process registry; the multiprocess collector is covered
    # by tests/system/test_metrics_multiprocess.py against a real server.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def scrape(http):
    response = http.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_of(samples, endpoint, status, method="POST"):
    return value(
        samples,
        "authserver_http_requests_total",
        endpoint=endpoint,
        method=method,
        status=str(status),
    )


def latency_count(samples, endpoint, status):
    return value(
        samples,
        "authserver_http_request_duration_seconds_count",
        endpoint=endpoint,
        status=str(status),
    )


def login(http, username, password):
    page = http.get("/login")
    return http.post(
        "/login",
        data={
            "csrf_token": csrf_token_of(page.get_data(as_text=True)),
            "username": username,
            "password": password,
        },
    )


EVENTS = [
    "authserver_tokens_issued_total",
    "authserver_tokens_refreshed_total",
    "authserver_refresh_replays_total",
    "authserver_refresh_reuse_detected_total",
    "authserver_families_revoked_total",
    "authserver_client_auth_failures_total",
    "authserver_login_failures_total",
    "authserver_rate_limited_total",
    "authserver_db_errors_total",
]


@WITH_TOKEN
def test_counters_move_by_the_scripted_flow(
    http, user, oauth_client, client_secret, get_code, exchange, refresh
):
    before = scrape(http)
    assert login(http, user.username, PASSWORD + "!").status_code == 401
    assert login(http, user.username, PASSWORD).status_code == 302
    first = exchange(get_code(user, oauth_client), oauth_client.client_id, client_secret).get_json()
    r0 = first["refresh_token"]
    second = refresh(r0, oauth_client.client_id, client_secret).get_json()
    replay = refresh(r0, oauth_client.client_id, client_secret).get_json()
    assert replay["refresh_token"] == second["refresh_token"]
    info = http.get(
        "/ifttt/v1/user/info", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert info.status_code == 200
    assert refresh(r0, oauth_client.client_id, "wrong-secret").status_code == 401
    third = refresh(second["refresh_token"], oauth_client.client_id, client_secret)
    assert third.status_code == 200
    # r0's successor is used now: presenting r0 again is reuse, the family dies.
    assert refresh(r0, oauth_client.client_id, client_secret).status_code == 400
    after = scrape(http)

    moved = {name: value(after, name) - value(before, name) for name in EVENTS}
    assert moved == {
        "authserver_tokens_issued_total": 1,
        "authserver_tokens_refreshed_total": 2,
        "authserver_refresh_replays_total": 1,
        "authserver_refresh_reuse_detected_total": 1,
        "authserver_families_revoked_total": 1,
        "authserver_client_auth_failures_total": 1,
        "authserver_login_failures_total": 1,
        "authserver_rate_limited_total": 0,
        "authserver_db_errors_total": 0,
    }
    for endpoint, method, status, times in [
        ("oauth.token", "POST", 200, 4),
        ("oauth.token", "POST", 400, 1),
        ("oauth.token", "POST", 401, 1),
        ("auth.login", "POST", 401, 1),
        ("auth.login", "POST", 302, 1),
        ("auth.login", "GET", 200, 2),
        ("oauth.authorize", "POST", 302, 1),
        ("ifttt.user_info", "GET", 200, 1),
    ]:
        assert (
            requests_of(after, endpoint, status, method)
            - requests_of(before, endpoint, status, method)
            == times
        ), (endpoint, method, status)
    assert latency_count(after, "oauth.token", 200) - latency_count(before, "oauth.token", 200) == 4
    assert (
        latency_count(after, "ifttt.user_info", 200) - latency_count(before, "ifttt.user_info", 200)
        == 1
    )
    # Every observation landed in a bucket: the +Inf bucket equals the count.
    assert value(
        after,
        "authserver_http_request_duration_seconds_bucket",
        endpoint="oauth.token",
        status="200",
        le="+Inf",
    ) == latency_count(after, "oauth.token", 200)


@pytest.mark.app_config(
    METRICS_TOKEN=METRICS_TOKEN, RATE_LIMITS="on", RATE_LIMIT_TOKEN_FAILURES="2 per minute"
)
def test_rate_limit_rejections_counted(http, oauth_client):
    before = scrape(http)
    statuses = [
        http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": "x",
                "client_id": oauth_client.client_id,
                "client_secret": "wrong",
            },
        ).status_code
        for _ in range(4)
    ]
    after = scrape(http)
    assert statuses == [401, 401, 429, 429]
    assert (
        value(after, "authserver_rate_limited_total")
        - value(before, "authserver_rate_limited_total")
        == 2
    )
    assert requests_of(after, "oauth.token", 429) - requests_of(before, "oauth.token", 429) == 2


@WITH_TOKEN
def test_unmatched_paths_share_one_label(http):
    before = scrape(http)
    http.get("/wp-login.php")
    http.get("/random/" + "x" * 40)
    after = scrape(http)
    assert (
        requests_of(after, "unmatched", 404, "GET") - requests_of(before, "unmatched", 404, "GET")
        == 2
    )
    assert not any("wp-login" in str(labels) for _name, labels in after)


@WITH_TOKEN
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
    ],
    ids=["missing", "wrong", "longer", "basic", "bare"],
)
def test_metrics_hidden_without_the_right_token(http, headers):
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 404
    assert b"authserver_" not in response.get_data()


def test_metrics_hidden_when_no_token_configured(http):
    assert http.get("/metrics").status_code == 404
    assert http.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert http.get("/metrics", headers=BEARER).status_code == 404


@WITH_TOKEN
def test_scrape_while_a_worker_creates_its_metric_file(http, tmp_path, monkeypatch):
    """A worker that is starting has created its file but not sized it yet (0 bytes)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_999999.db").touch()
    response = http.get("/metrics", headers=BEARER)
    assert response.status_code == 200
