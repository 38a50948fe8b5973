"""IftttService: IFTTT's service protocol, against the authserver over real HTTP."""

import logging
import subprocess
import sys
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest

from authserver.shim import IftttService
from authserver.shim import Skip
from authserver.shim import TriggerIdentity
from tests.factories import make_oauth_client
from tests.factories import make_tokens
from tests.shim.conftest import SERVICE_KEYS
from tests.shim.conftest import bearer
from tests.shim.conftest import shim_client

TRIGGER = "/ifttt/v1/triggers/new_thing"
FIELDS = {"triggerFields": {"topic": "news"}}


def events(count, user_id="u", start=1_900_000_000):
    # Deliberately oldest first: the kit orders them.
    return [
        {"title": f"#{n}", "meta": {"id": f"{user_id}-{n}", "timestamp": start + n * 60}}
        for n in range(count)
    ]


@pytest.fixture
def calls():
    return []


@pytest.fixture
def service(make_service, calls):
    service = make_service()

    @service.trigger("new_thing", fields=["topic"])
    def new_thing(user, fields, limit):
        calls.append(("trigger", user.sub, fields, limit))
        return events(60, user.sub)

    @service.trigger_field_options("new_thing", "topic")
    def topics(user):
        return ["news", {"label": "Sports", "value": "sports"}]

    @service.trigger_field_validation("new_thing", "topic")
    def valid_topic(user, value):
        return True if value in ("news", "sports") else "Pick news or sports."

    @service.action("create_thing", fields=["title"])
    def create_thing(user, fields):
        calls.append(("action", user.sub, fields))
        if not fields["title"]:
            raise Skip("An empty title creates nothing.")
        return 42

    @service.action_field_options("create_thing", "title")
    def titles(user):
        return ["Hello"]

    @service.query("list_things")
    def list_things(user, fields, limit, cursor):
        return [{"id": "1"}, {"id": "2"}], "next-page"

    @service.test_setup
    def samples(user):
        calls.append(("setup", user.sub))
        return {"triggers": {"new_thing": {"topic": "news"}}}

    return service


@pytest.fixture
def shim(service):
    return shim_client(service)


def errors_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.get_json()
    assert set(body) == {"errors"}
    assert body["errors"][0]["message"]
    return body["errors"]


# Import isolation ------------------------------------------------------------------


def test_importing_the_kit_pulls_in_no_server_module_database_or_argon2():
    code = (
        "import sys, authserver.shim\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('argon2', 'sqlalchemy', 'flask_sqlalchemy', 'alembic', 'flask_migrate') "
        "or (m.startswith('authserver.') and not m.startswith('authserver.shim')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""


def test_the_isolation_check_can_fail():
    code = (
        "import sys, authserver.shim, authserver.database\n"
        "print(sorted(m for m in sys.modules if m == 'authserver.database'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "authserver.database" in done.stdout


# Service key, status, test/setup --------------------------------------------------


@pytest.mark.parametrize("key", SERVICE_KEYS)
def test_status_accepts_each_service_key(shim, key):
    assert shim.get("/ifttt/v1/status", headers={"IFTTT-Service-Key": key}).status_code == 200
    assert shim.get("/ifttt/v1/status", headers={"IFTTT-Channel-Key": key}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"IFTTT-Service-Key": ""},
        {"IFTTT-Service-Key": "INVALID"},
        {"IFTTT-Service-Key": SERVICE_KEYS[0] + "x"},
        {"IFTTT-Service-Key": SERVICE_KEYS[0][:-1]},
    ],
)
def test_status_and_setup_refuse_a_wrong_service_key(shim, headers, caplog):
    with caplog.at_level(logging.WARNING, "authserver.shim"):
        errors_of(shim.get("/ifttt/v1/status", headers=headers), 401)
        errors_of(shim.post("/ifttt/v1/test/setup", headers=headers), 401)
    assert "invalid IFTTT service key" in caplog.text
    assert SERVICE_KEYS[0] not in caplog.text


def test_service_needs_a_service_key(make_service):
    for keys in ([], [""], ["k", ""]):
        with pytest.raises(ValueError, match="service_keys"):
            make_service(service_keys=keys)


def test_status_503_when_authserver_unreachable(make_service):
    shim = shim_client(make_service(authserver_url="http://127.0.0.1:9", timeout=0.5))
    errors_of(shim.get("/ifttt/v1/status", headers={"IFTTT-Service-Key": SERVICE_KEYS[1]}), 503)


def test_test_setup_hands_a_working_token_and_the_samples(shim, user, calls):
    setup = shim.post("/ifttt/v1/test/setup", headers={"IFTTT-Service-Key": SERVICE_KEYS[0]})
    assert setup.status_code == 200
    data = setup.get_json()["data"]
    assert calls == [("setup", user.public_id)]
    assert data["samples"] == {"triggers": {"new_thing": {"topic": "news"}}}
    response = shim.post(TRIGGER, json=FIELDS, headers=bearer(data["accessToken"]))
    assert response.status_code == 200
    assert response.get_json()["data"][0]["meta"]["id"].startswith(user.public_id)


def test_test_setup_names_the_missing_permission(make_service, app, caplog):
    from authserver.services import clients as client_service

    server, secret = client_service.register_resource_server("Not allowed")
    service = make_service(server_id=server.server_id, server_secret=secret)
    service.test_setup(lambda user: {})
    shim = shim_client(service)
    with caplog.at_level(logging.ERROR, "authserver.shim"):
        response = shim.post("/ifttt/v1/test/setup", headers={"IFTTT-Service-Key": SERVICE_KEYS[0]})
    message = errors_of(response, 500)[0]["message"]
    assert f"allow-test-tokens {server.server_id}" in message
    assert secret not in caplog.text


# Bearer tokens ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": "Basic d2FsdGVyOnB3"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 600},
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        TRIGGER,
        "/ifttt/v1/actions/create_thing",
        "/ifttt/v1/queries/list_things",
        "/ifttt/v1/triggers/new_thing/fields/topic/options",
    ],
)
def test_bad_or_missing_token_is_401(shim, calls, headers, path):
    response = shim.post(path, json=FIELDS, headers=headers)
    errors_of(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert calls == []


def test_token_without_the_scope_is_401_not_403(shim, app, user, calls):
    other, _ = make_oauth_client(scopes=["other"])
    token = make_tokens(user, other)["access_token"]
    errors_of(shim.post(TRIGGER, json=FIELDS, headers=bearer(token)), 401)
    assert calls == []


def test_token_503_when_authserver_unreachable(make_service, access_token):
    service = make_service(authserver_url="http://127.0.0.1:9", timeout=0.5)
    service.trigger("new_thing")(lambda user, fields, limit: [])
    shim = shim_client(service)
    response = shim.post(TRIGGER, json=FIELDS, headers=bearer(access_token))
    errors_of(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in response.headers


def test_refresh_token_is_401(shim, calls, user, oauth_client):
    refresh_token = make_tokens(user, oauth_client)["refresh_token"]
    errors_of(shim.post(TRIGGER, json=FIELDS, headers=bearer(refresh_token)), 401)
    assert calls == []


# Triggers -----------------------------------------------------------------------


def test_trigger_gets_the_user_fields_and_limit(shim, calls, user, access_token):
    response = shim.post(
        TRIGGER, json={**FIELDS, "limit": 7, "extra": 1}, headers=bearer(access_token)
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert calls == [("trigger", user.public_id, {"topic": "news"}, 7)]
    assert len(response.get_json()["data"]) == 7


@pytest.mark.parametrize(("body", "expected"), [({}, 50), ({"limit": 1}, 1), ({"limit": 0}, 0)])
def test_trigger_limit_defaults_to_50_and_allows_0(shim, access_token, body, expected):
    response = shim.post(TRIGGER, json={**FIELDS, **body}, headers=bearer(access_token))
    assert response.status_code == 200
    assert len(response.get_json()["data"]) == expected


@pytest.mark.parametrize("limit", [-1, "5", 1.5, True])
def test_trigger_bad_limit_is_400(shim, access_token, limit):
    errors_of(
        shim.post(TRIGGER, json={**FIELDS, "limit": limit}, headers=bearer(access_token)), 400
    )


def test_trigger_events_are_newest_first(shim, access_token):
    data = shim.post(TRIGGER, json=FIELDS, headers=bearer(access_token)).get_json()["data"]
    stamps = [event["meta"]["timestamp"] for event in data]
    assert stamps == sorted(stamps, reverse=True)
    assert data[0]["meta"]["id"].endswith("-59")


@pytest.mark.parametrize("body", [{}, {"triggerFields": {}}, {"triggerFields": "news"}])
def test_trigger_without_its_fields_is_400(shim, calls, access_token, body):
    errors_of(shim.post(TRIGGER, json=body, headers=bearer(access_token)), 400)
    assert calls == []


def test_trigger_with_a_body_that_is_not_json_is_400(shim, access_token):
    response = shim.post(
        TRIGGER, data="{", headers={**bearer(access_token), "Content-Type": "application/json"}
    )
    errors_of(response, 400)


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"title": "x"}, 'no "meta"'),
        ({"meta": {"timestamp": 1}}, "meta.id"),
        ({"meta": {"id": "", "timestamp": 1}}, "meta.id"),
        ({"meta": {"id": "a"}}, "meta.timestamp"),
        ({"meta": {"id": "a", "timestamp": "yesterday"}}, "meta.timestamp"),
        ({"meta": {"id": "a", "timestamp": datetime(2030, 1, 1)}}, "meta.timestamp"),  # noqa: DTZ001
    ],
)
def test_event_without_meta_is_a_clear_developer_error(
    make_service, access_token, caplog, event, fragment
):
    service = make_service()
    service.trigger("new_thing")(lambda user, fields, limit: [*events(2), event])
    with caplog.at_level(logging.ERROR, "authserver.shim"):
        response = shim_client(service).post(TRIGGER, json=FIELDS, headers=bearer(access_token))
    message = errors_of(response, 500)[0]["message"]
    assert "trigger 'new_thing' event #3" in message
    assert fragment in message
    assert fragment in caplog.text


def test_event_timestamps_may_be_aware_datetimes_and_ids_ints(make_service, access_token):
    service = make_service()
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    service.trigger("new_thing")(
        lambda user, fields, limit: [{"meta": {"id": 7, "timestamp": moment}}]
    )
    response = shim_client(service).post(TRIGGER, json=FIELDS, headers=bearer(access_token))
    assert response.get_json()["data"] == [
        {"meta": {"id": "7", "timestamp": int(moment.timestamp())}}
    ]


def test_a_failing_function_is_a_generic_500(make_service, access_token, caplog):
    service = make_service()

    @service.trigger("new_thing")
    def broken(user, fields, limit):
        raise RuntimeError("database password is hunter2")

    with caplog.at_level(logging.ERROR, "authserver.shim"):
        response = shim_client(service).post(TRIGGER, json=FIELDS, headers=bearer(access_token))
    assert "hunter2" not in errors_of(response, 500)[0]["message"]
    assert "shim function failed" in caplog.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/ifttt/v1/triggers/unknown"),
        ("get", TRIGGER),
        ("put", "/ifttt/v1/status"),
        ("post", "/ifttt/v1/nothing/here"),
        ("post", "/ifttt/v1/triggers/new_thing/fields/nope/options"),
        ("post", "/ifttt/v1/actions/unknown"),
    ],
)
def test_unknown_routes_are_404_in_ifttt_shape(shim, access_token, method, path):
    response = getattr(shim, method)(path, json=FIELDS, headers=bearer(access_token))
    errors_of(response, 404)


# Trigger identities ---------------------------------------------------------------


def test_trigger_identity_is_recorded_with_its_user(service, shim, user, access_token):
    body = {**FIELDS, "trigger_identity": "a" * 40}
    assert shim.post(TRIGGER, json=body, headers=bearer(access_token)).status_code == 200
    [identity] = service.store.find(user_id=user.public_id)
    assert identity.trigger_identity == "a" * 40
    assert identity.slug == "new_thing"
    assert identity.fields == {"topic": "news"}


def test_trigger_identity_delete_forgets_it_and_calls_the_hook(service, shim, user, access_token):
    deleted: list[Any] = []
    service.trigger_identity_deleted(deleted.append)
    shim.post(TRIGGER, json={**FIELDS, "trigger_identity": "b" * 40}, headers=bearer(access_token))
    response = shim.delete(
        "/ifttt/v1/triggers/new_thing/trigger_identity/" + "b" * 40, headers=bearer(access_token)
    )
    assert response.status_code == 200
    assert service.store.get("b" * 40) is None
    assert [identity.trigger_identity for identity in deleted] == ["b" * 40]
    assert deleted[0].user_id == user.public_id


def test_trigger_identity_delete_needs_a_token(service, shim, access_token):
    shim.post(TRIGGER, json={**FIELDS, "trigger_identity": "c" * 40}, headers=bearer(access_token))
    response = shim.delete("/ifttt/v1/triggers/new_thing/trigger_identity/" + "c" * 40)
    errors_of(response, 401)
    assert service.store.get("c" * 40) is not None


def test_trigger_identity_of_another_user_is_not_forgotten(service, shim, access_token):
    service.store.remember(TriggerIdentity("d" * 40, "new_thing", "someone-else"))
    response = shim.delete(
        "/ifttt/v1/triggers/new_thing/trigger_identity/" + "d" * 40, headers=bearer(access_token)
    )
    assert response.status_code == 200
    assert service.store.get("d" * 40) is not None


# Actions, queries, fields ----------------------------------------------------------


def test_action_returns_the_created_id(shim, calls, user, access_token):
    response = shim.post(
        "/ifttt/v1/actions/create_thing",
        json={"actionFields": {"title": "Hi"}},
        headers=bearer(access_token),
    )
    assert response.status_code == 200
    assert response.get_json() == {"data": [{"id": "42"}]}
    assert calls == [("action", user.public_id, {"title": "Hi"})]


def test_action_skip_is_400_with_skip(shim, access_token):
    response = shim.post(
        "/ifttt/v1/actions/create_thing",
        json={"actionFields": {"title": ""}},
        headers=bearer(access_token),
    )
    assert errors_of(response, 400) == [
        {"status": "SKIP", "message": "An empty title creates nothing."}
    ]


@pytest.mark.parametrize("body", [{}, {"actionFields": {}}, {"actionFields": []}])
def test_action_without_its_fields_is_400(shim, calls, access_token, body):
    errors_of(
        shim.post("/ifttt/v1/actions/create_thing", json=body, headers=bearer(access_token)), 400
    )
    assert calls == []


@pytest.mark.parametrize("result", [None, "", [], [{"url": "x"}], {"id": None}])
def test_action_without_an_id_is_a_developer_error(make_service, access_token, result):
    service = make_service()
    service.action("create_thing")(lambda user, fields: result)
    response = shim_client(service).post(
        "/ifttt/v1/actions/create_thing", json={"actionFields": {}}, headers=bearer(access_token)
    )
    assert "action 'create_thing'" in errors_of(response, 500)[0]["message"]


def test_query_returns_items_and_cursor(shim, access_token):
    response = shim.post(
        "/ifttt/v1/queries/list_things", json={"queryFields": {}}, headers=bearer(access_token)
    )
    assert response.status_code == 200
    assert response.get_json() == {"data": [{"id": "1"}, {"id": "2"}], "cursor": "next-page"}


def test_field_options_have_labels_and_values(shim, access_token):
    for path, expected in (
        (
            "/ifttt/v1/triggers/new_thing/fields/topic/options",
            [{"label": "news", "value": "news"}, {"label": "Sports", "value": "sports"}],
        ),
        (
            "/ifttt/v1/actions/create_thing/fields/title/options",
            [{"label": "Hello", "value": "Hello"}],
        ),
    ):
        response = shim.post(path, json={}, headers=bearer(access_token))
        assert response.status_code == 200
        assert response.get_json() == {"data": expected}


def test_field_validation_answers_valid_or_message(shim, access_token):
    path = "/ifttt/v1/triggers/new_thing/fields/topic/validate"
    ok = shim.post(path, json={"value": "news"}, headers=bearer(access_token))
    assert ok.get_json() == {"data": {"valid": True}}
    bad = shim.post(path, json={"value": "cats"}, headers=bearer(access_token))
    assert bad.get_json() == {"data": {"valid": False, "message": "Pick news or sports."}}
    errors_of(shim.post(path, json={}, headers=bearer(access_token)), 400)


def test_a_slug_cannot_be_registered_twice(make_service):
    service = make_service()
    service.trigger("t")(lambda user, fields, limit: [])
    with pytest.raises(ValueError, match="twice"):
        service.trigger("t")(lambda user, fields, limit: [])


def test_two_services_share_one_app(make_service):
    first, second = make_service(name="first"), make_service(name="second")
    assert isinstance(first, IftttService)
    assert first.blueprint.name != second.blueprint.name
