"""The service's look on every page: name, logo, accent colour, scope texts, overrides.

An operator restyles the pages without forking: ``instance/templates/`` is searched
before the packaged templates (the Flask convention; a template there may extend the
original as ``authserver/<name>``), and ``instance/static/`` before the packaged
static files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask import current_app
from flask import send_from_directory
from flask import url_for
from flask_babel import format_date
from flask_babel import format_timedelta
from flask_babel import get_locale
from flask_babel import lazy_gettext
from jinja2 import ChoiceLoader
from jinja2 import FileSystemLoader
from jinja2 import PrefixLoader
from werkzeug.exceptions import NotFound

from . import resource_dir
from .config import parse_scope_descriptions

EXTENSION_KEY = "authserver.branding"
LOGO_FILES = ("logo.svg", "logo.png", "logo.webp", "logo.jpg")

# What the scopes we ship mean, in the user's words (operators add or replace these
# with AUTHSERVER_SCOPE_DESCRIPTIONS).
BUILTIN_SCOPE_DESCRIPTIONS: dict[str, Any] = {
    "ifttt": lazy_gettext(
        "Use your account in IFTTT Applets: see who you are, run their triggers "
        "and carry out their actions for you"
    ),
}


@dataclass(frozen=True)
class Branding:
    """What every page shows of the service, resolved once at start-up."""

    service_name: str
    logo_url: str
    logo_file: str | None
    accent: str
    accent_text: str
    theme_css: str
    theme_version: str
    scope_texts: dict[str, dict[str, str]]

    def logo(self) -> str | None:
        """Return the logo's URL (configured, or a file in instance/static), if any."""
        if self.logo_url:
            return self.logo_url
        if self.logo_file:
            return url_for("static", filename=self.logo_file)
        return None


def _channel(value: int) -> float:
    # WCAG 2.1 relative luminance: sRGB channel to linear light.
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """Return the WCAG relative luminance of a #rgb or #rrggbb colour."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(first: str, second: str) -> float:
    """Return the WCAG contrast ratio of two colours (1 to 21)."""
    a, b = sorted((luminance(first), luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def text_color_on(background: str) -> str:
    """Pick black or white text, whichever contrasts more (always >= 4.58:1).

    Pure black and white are needed for that bound: with #111 a mid grey such as
    #777 would reach only 4.48:1 either way.
    """
    dark, light = "#000000", "#ffffff"
    return dark if contrast(background, dark) >= contrast(background, light) else light


def _branding(app: Flask) -> Branding:
    config = app.config
    accent = str(config["ACCENT_COLOR"]).lower()
    accent_text = text_color_on(accent)
    theme_css = f":root {{ --accent: {accent}; --accent-text: {accent_text}; }}\n"
    static = Path(app.instance_path) / "static"
    logo_file = next((name for name in LOGO_FILES if (static / name).is_file()), None)
    return Branding(
        service_name=str(config["SERVICE_NAME"]).strip(),
        logo_url=str(config["LOGO_URL"]),
        logo_file=logo_file,
        accent=accent,
        accent_text=accent_text,
        theme_css=theme_css,
        theme_version=hashlib.sha256(theme_css.encode()).hexdigest()[:12],
        scope_texts=parse_scope_descriptions(config["SCOPE_DESCRIPTIONS"]),
    )


def branding() -> Branding:
    """Return the current app's branding."""
    value: Branding = current_app.extensions[EXTENSION_KEY]
    return value


def image_origin(app: Flask) -> str | None:
    """Return the origin the logo comes from when it is not this server."""
    logo = str(app.config["LOGO_URL"])
    if logo.startswith(("https://", "http://")):
        parts = urlsplit(logo)
        return f"{parts.scheme}://{parts.netloc}"
    return None


def scope_description(scope: str) -> str | None:
    """Return the plain-language description of a scope in the page's language."""
    texts = branding().scope_texts.get(scope)
    if texts:
        language = str(get_locale() or "en")
        return texts.get(language) or texts.get("en") or texts.get("") or next(iter(texts.values()))
    builtin = BUILTIN_SCOPE_DESCRIPTIONS.get(scope)
    return str(builtin) if builtin is not None else None


def init_branding(app: Flask) -> None:
    """Resolve the branding, put instance/ overrides first, expose both to templates."""
    app.extensions[EXTENSION_KEY] = _branding(app)
    packaged = FileSystemLoader(resource_dir("templates"))
    app.jinja_loader = ChoiceLoader(
        [
            FileSystemLoader(str(Path(app.instance_path) / "templates")),
            packaged,
            # An override can extend the original: {% extends "authserver/base.html" %}.
            PrefixLoader({"authserver": packaged}),
        ]
    )
    _serve_instance_static_first(app)

    @app.context_processor
    def _brand() -> dict[str, Any]:
        return {
            "brand": branding(),
            "locale": str(get_locale() or "en"),
            "scope_description": scope_description,
            "format_date": format_date,
            "format_timedelta": format_timedelta,
        }


def _serve_instance_static_first(app: Flask) -> None:
    overrides = Path(app.instance_path) / "static"
    packaged_view = app.view_functions["static"]

    def static(filename: str) -> Any:
        if overrides.is_dir():
            try:
                return send_from_directory(overrides, filename)
            except NotFound:
                pass
        return packaged_view(filename=filename)

    app.view_functions["static"] = static
