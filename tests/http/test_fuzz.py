"""Property-based fuzzing: Schemathesis from /openapi.json, Hypothesis on the parsers.

Budgets are fixed and derandomized so CI runs the same examples every time.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_headers_conformance
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance
from werkzeug.datastructures import MultiDict

import authserver
from authserver.services import clients as client_service
from authserver.services import shim_test_tokens as test_token_service
from tests.conftest import csrf_token_of
from tests.factories import basic_auth
from tests.factories import make_tokens

OPENAPI = Path(authserver.__file__).resolve().parent / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FUZZ = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@cache
def _document() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def assert_documented(shape: str, body: Any) -> None:
    """Fail unless `body` matches components/schemas/<shape> of openapi.json."""
    schema = {"$ref": f"#/components/schemas/{shape}", "components": _document()["components"]}
    # jsonschema-rs comes with Schemathesis.
    jsonschema_rs.validate(schema, body)


def assert_documented_error(path: str, response: Any) -> None:
    """An error answer of an API endpoint is JSON in that endpoint's documented shape."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/json", response.get_data()[:300]
    shape = "IftttErrors" if path.startswith("/ifttt/") else "OAuthError"
    assert_documented(shape, response.get_json())


@pytest.fixture
def schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture
def credentials(app, user, oauth_client, client_secret):
    """Valid credentials per operation, so fuzzing also reaches past authentication."""
    server, server_secret = client_service.register_resource_server("shim")
    test_token_service.allow_test_tokens(
        server.server_id, username=user.username, client_id=oauth_client.client_id
    )
    tokens = make_tokens(user, oauth_client)
    client_basic = basic_auth(oauth_client.client_id, client_secret)
    server_basic = basic_auth(server.server_id, server_secret)
    return {
        "POST /oauth/token": client_basic,
        "POST /oauth/revoke": client_basic,
        "POST /oauth/introspect": server_basic,
        "POST /shim/test-token": server_basic,
        "GET /ifttt/v1/user/info": {"Authorization": "Bearer " + tokens["access_token"]},
    }


def _operation(schema, label):
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label == label:
            return operation
    raise AssertionError(f"{label} is not in openapi.json")


def _fuzz(operation, mode, headers=None):
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    def run(case):
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    run()


def test_openapi_document_is_served_and_describes_the_machine_endpoints(http):
    response = http.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document == _document()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        "/shim/test-token",
        "/.well-known/oauth-authorization-server",
        "/ifttt/v1/user/info",
    }
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect", "/shim/test-token"):
        body = document["paths"][path]["post"]["requestBody"]["content"]
        assert list(body) == ["application/x-www-form-urlencoded"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["clientBasic"]["scheme"] == "basic"
    assert schemes["bearer"]["scheme"] == "bearer"


def test_openapi_document_is_valid_openapi(schema):
    labels = sorted(result.ok().label for result in schema.get_all_operations())
    assert labels == [
        "GET /.well-known/oauth-authorization-server",
        "GET /ifttt/v1/user/info",
        "POST /oauth/introspect",
        "POST /oauth/revoke",
        "POST /oauth/token",
        "POST /shim/test-token",
    ]


@pytest.mark.parametrize(
    ("label", "mode"),
    [
        *[
            (label, mode)
            for label in (
                "POST /oauth/token",
                "POST /oauth/revoke",
                "POST /oauth/introspect",
                "POST /shim/test-token",
                "GET /ifttt/v1/user/info",
            )
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ],
        # Metadata takes no input, so there is nothing to make invalid.
        ("GET /.well-known/oauth-authorization-server", GenerationMode.POSITIVE),
    ],
)
def test_fuzzed_requests_never_5xx_and_match_the_document(schema, label, mode):
    _fuzz(_operation(schema, label), mode)


@pytest.mark.parametrize(
    "label",
    [
        "POST /oauth/token",
        "POST /oauth/revoke",
        "POST /oauth/introspect",
        "POST /shim/test-token",
        "GET /ifttt/v1/user/info",
    ],
)
def test_fuzzed_requests_with_valid_credentials_never_5xx(schema, credentials, label):
    _fuzz(_operation(schema, label), GenerationMode.POSITIVE, headers=credentials[label])


# Hypothesis straight at the parsers: any form fields, any bytes.

FIELD_NAMES = st.one_of(
    st.sampled_from(
        [
            "grant_type",
            "code",
            "refresh_token",
            "client_id",
            "client_secret",
            "redirect_uri",
            "code_verifier",
            "scope",
            "token",
            "token_type_hint",
        ]
    ),
    st.text(max_size=20),
)
FIELD_VALUES = st.one_of(
    st.sampled_from(["authorization_code", "refresh_token", "ifttt", "", "\x00", "%ff"]),
    st.text(max_size=300),
)
FORMS = st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=10)


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/shim/test-token"]
)
def test_arbitrary_form_fields_never_5xx(http, oauth_client, client_secret, path):
    auth = basic_auth(oauth_client.client_id, client_secret)

    @FUZZ
    @given(fields=FORMS, with_auth=st.booleans())
    def run(fields, with_auth):
        response = http.post(path, data=MultiDict(fields), headers=auth if with_auth else {})
        if response.status_code == 200:
            shape = {
                "/oauth/token": "TokenResponse",
                "/oauth/revoke": "Empty",
                "/oauth/introspect": "Introspection",
            }[path]
            assert_documented(shape, response.get_json())
        else:
            assert_documented_error(path, response)

    run()


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/shim/test-token"]
)
def test_arbitrary_body_bytes_never_5xx(http, path):
    content_types = st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/x-www-form-urlencoded; charset=latin-1",
        ]
    )

    @FUZZ
    @given(body=st.binary(max_size=2000), content_type=content_types)
    def run(body, content_type):
        response = http.post(path, data=body, content_type=content_type)
        assert response.status_code in (400, 401, 413), response.get_data()[:300]
        assert_documented_error(path, response)

    run()


def test_arbitrary_login_form_never_5xx_and_never_logs_in(http, user):
    token = csrf_token_of(http.get("/login").get_data(as_text=True))
    names = st.one_of(
        st.sampled_from(["username", "password", "next", "csrf_token"]), st.text(max_size=10)
    )

    @FUZZ
    @given(
        fields=st.lists(st.tuples(names, st.text(max_size=300)), max_size=6),
        with_token=st.booleans(),
    )
    def run(fields, with_token):
        data = [*fields, ("csrf_token", token)] if with_token else fields
        response = http.post("/login", data=MultiDict(data))
        assert response.status_code in (400, 401, 429), response.status_code
        assert response.mimetype == "text/html"
        with http.session_transaction() as session:
            assert "_user_id" not in session

    run()
