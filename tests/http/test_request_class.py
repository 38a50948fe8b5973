"""The app's request class: the same forms as Flask's own, fewer instructions."""

import pytest
from flask import Flask
from flask import Request

BODIES = [
    b"grant_type=refresh_token&refresh_token=abc&client_id=x",
    b"token=a+b%20c&token_type_hint=",
    b"a=1&a=2&b",
    b"scope=%E2%9C%93&x=%zz&y=%",
    b"x=%ff%fe&y=%C3",  # escapes of bytes that are not UTF-8
    b"name=\xff\xfe",  # not UTF-8: the generic parser gives an empty form
    b"",
    b"&&=&k==v",
]


@pytest.mark.parametrize("body", BODIES)
def test_url_encoded_form_is_what_werkzeug_parses(app: Flask, body: bytes) -> None:
    assert app.request_class is not Request
    kwargs = {
        "method": "POST",
        "data": body,
        "content_type": "application/x-www-form-urlencoded",
    }
    with app.test_request_context("/oauth/token", **kwargs) as ctx:
        ours = ctx.request
        assert type(ours) is app.request_class
        form, files = ours.form, ours.files
    with app.test_request_context("/oauth/token", **kwargs) as ctx:
        generic = Request(ctx.request.environ)
        assert list(form.items(multi=True)) == list(generic.form.items(multi=True))
        assert not files
        assert not generic.files


def test_form_after_get_data_still_parses(app: Flask) -> None:
    with app.test_request_context(
        "/oauth/token",
        method="POST",
        data=b"a=1",
        content_type="application/x-www-form-urlencoded",
    ) as ctx:
        assert ctx.request.get_data() == b"a=1"
        assert ctx.request.form["a"] == "1"


def test_oversized_form_is_refused_with_413(http, app: Flask) -> None:
    body = b"token=" + b"a" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = http.post(
        "/oauth/introspect",
        data=body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413
    assert response.is_json
