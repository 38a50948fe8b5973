"""Pages carry the service's name, logo and colour; operators override templates and files."""

import re
from pathlib import Path

import pytest
from flask import current_app

from authserver import create_app
from authserver.branding import contrast
from authserver.branding import text_color_on
from authserver.errors import ConfigError
from tests.conftest import base_config


def page(http, path="/login", **headers):
    response = http.get(path, headers=headers)
    assert response.status_code == 200, response.status_code
    return response


def instance(name):
    folder = Path(current_app.instance_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.app_config(SERVICE_NAME="Acme Smart Home")
def test_service_name_in_tab_title_and_heading(http):
    html = page(http).get_data(as_text=True)
    assert "<title>Sign in · Acme Smart Home</title>" in html
    assert "<h1>Sign in to Acme Smart Home</h1>" in html
    assert '<span class="service-name">Acme Smart Home</span>' in html


@pytest.mark.app_config(LOGO_URL="https://cdn.example.com/acme/logo.svg", SERVICE_NAME="Acme")
def test_logo_url_is_shown_and_allowed_by_the_csp(http):
    response = page(http)
    assert '<img class="logo" src="https://cdn.example.com/acme/logo.svg" alt="Acme">' in (
        response.get_data(as_text=True)
    )
    policy = response.headers["Content-Security-Policy"]
    assert "img-src 'self' https://cdn.example.com;" in policy
    # Only images: scripts and styles stay our own.
    assert "style-src 'self';" in policy
    assert "default-src 'none'" in policy


def test_logo_file_in_the_instance_folder_is_served(app, http):
    (instance("static") / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    fresh = create_app(dict(app.config, TESTING=True)).test_client()
    html = page(fresh).get_data(as_text=True)
    assert '<img class="logo" src="/static/logo.svg" alt="authserver">' in html
    with fresh.get("/static/logo.svg") as logo:
        assert logo.status_code == 200
        assert logo.mimetype == "image/svg+xml"
    assert "img-src 'self';" in page(fresh).headers["Content-Security-Policy"]


@pytest.mark.app_config(ACCENT_COLOR="#0b6e4f")
def test_accent_colour_reaches_the_pages_through_theme_css(http):
    html = page(http).get_data(as_text=True)
    link = re.search(r'href="(/theme\.css\?v=[0-9a-f]+)"', html)
    assert link, html
    css = http.get(link.group(1))
    assert css.status_code == 200
    assert css.mimetype == "text/css"
    assert css.get_data(as_text=True).strip() == (
        ":root { --accent: #0b6e4f; --accent-text: #ffffff; }"
    )


@pytest.mark.parametrize(
    "accent",
    [
        "#000000",
        "#ffffff",
        "#ffeb3b",
        "#1a56db",
        "#777777",
        "#7f7f7f",
        "#e91e63",
        "#00bcd4",
        "#f90",
    ],
)
def test_text_on_any_accent_colour_passes_wcag_aa(accent):
    assert contrast(accent, text_color_on(accent)) >= 4.5


def test_light_accent_gets_dark_text():
    assert text_color_on("#ffeb3b") == "#000000"
    assert text_color_on("#1a56db") == "#ffffff"


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("ACCENT_COLOR", "blue", "AUTHSERVER_ACCENT_COLOR"),
        ("ACCENT_COLOR", "#12345", "AUTHSERVER_ACCENT_COLOR"),
        ("LOGO_URL", "http://cdn.example.com/logo.png", "AUTHSERVER_LOGO_URL"),
        ("LOGO_URL", "javascript:alert(1)", "AUTHSERVER_LOGO_URL"),
        ("LOGO_URL", "//cdn.example.com/logo.png", "AUTHSERVER_LOGO_URL"),
        ("SERVICE_NAME", "  ", "AUTHSERVER_SERVICE_NAME"),
        ("SCOPE_DESCRIPTIONS", "{not json", "AUTHSERVER_SCOPE_DESCRIPTIONS"),
        ("SCOPE_DESCRIPTIONS", '["ifttt"]', "AUTHSERVER_SCOPE_DESCRIPTIONS"),
        ("SCOPE_DESCRIPTIONS", '{"ifttt": {"en": 3}}', "AUTHSERVER_SCOPE_DESCRIPTIONS"),
        ("SCOPE_DESCRIPTIONS", '{"ifttt": ""}', "AUTHSERVER_SCOPE_DESCRIPTIONS"),
    ],
)
def test_bad_branding_setting_stops_start_up_naming_it(database_url, setting, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        create_app({**base_config(database_url), setting: value})


def test_template_in_the_instance_folder_replaces_the_packaged_one(app, http):
    (instance("templates") / "auth").mkdir(exist_ok=True)
    (instance("templates") / "auth" / "login.html").write_text(
        '{% extends "authserver/auth/login.html" %}'
        "{% block content %}<p>Welcome to the Acme portal</p>{{ super() }}{% endblock %}"
    )
    html = page(http).get_data(as_text=True)
    assert "<p>Welcome to the Acme portal</p>" in html
    # The original still renders underneath (it was extended, not copied).
    assert 'name="csrf_token"' in html


def test_base_template_override_restyles_every_page(app, http):
    instance("templates").joinpath("base.html").write_text(
        '{% extends "authserver/base.html" %}'
        '{% block brand %}<strong class="acme">ACME</strong>{% endblock %}'
    )
    for path in ("/login", "/logout"):
        assert '<strong class="acme">ACME</strong>' in page(http, path).get_data(as_text=True)


def test_static_file_in_the_instance_folder_wins(app, http):
    instance("static").joinpath("style.css").write_text("body { color: rebeccapurple }")
    with http.get("/static/style.css") as css:
        assert css.get_data(as_text=True) == "body { color: rebeccapurple }"
    # Files not overridden still come from the package.
    with http.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200


def test_static_override_cannot_escape_its_folder(app, http):
    instance("static")
    assert http.get("/static/../secret_key").status_code == 404
    assert http.get("/static/%2e%2e/secret_key").status_code == 404


def test_favicon_is_served_and_linked(http):
    with http.get("/favicon.ico") as icon:
        assert icon.status_code == 200
        assert icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO header
    html = page(http).get_data(as_text=True)
    assert '<link rel="icon" href="/favicon.ico" sizes="32x32">' in html
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html


def test_favicon_can_be_overridden(app, http):
    instance("static").joinpath("favicon.ico").write_bytes(b"\x00\x00\x01\x00custom")
    with http.get("/favicon.ico") as icon:
        assert icon.data == b"\x00\x00\x01\x00custom"
