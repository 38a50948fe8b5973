"""Translations (Flask-Babel): the page language from Accept-Language, English otherwise."""

from __future__ import annotations

import logging
from pathlib import Path

from babel.core import negotiate_locale
from flask import Flask
from flask import request
from flask_babel import Babel

from . import resource_dir

log = logging.getLogger(__name__)

# English first: it is the fallback when nothing in Accept-Language matches.
LOCALES = ("en", "es", "de", "fr", "ja")


def select_locale() -> str:
    """Pick the best supported language the browser asks for (RFC 9110 §12.5.4).

    Languages are tried in the browser's order of preference, each by its exact tag
    and then its primary language ("es-MX" is served "es"), so "en-GB, fr;q=0.5"
    gets English, not French.
    """
    preferred = [tag for tag, _ in request.accept_languages if tag != "*"]
    chosen = negotiate_locale(preferred, LOCALES, sep="-")
    return str(chosen) if chosen else LOCALES[0]


def init_i18n(app: Flask) -> None:
    """Bind Flask-Babel to the shipped catalogs; warn about catalogs not compiled."""
    directory = resource_dir("translations")
    Babel(
        app,
        locale_selector=select_locale,
        default_translation_directories=directory,
        default_timezone="UTC",
    )
    for locale in LOCALES[1:]:
        problem = catalog_problem(Path(directory), locale)
        if problem:
            log.warning("translations: %s; pages in %s fall back to English", problem, locale)


def catalog_problem(directory: Path, locale: str) -> str | None:
    """Say what is wrong with a language's compiled catalog, if anything."""
    folder = directory / locale / "LC_MESSAGES"
    compiled, source = folder / "messages.mo", folder / "messages.po"
    if not compiled.exists():
        return f"{compiled} is missing (run `make translations`)"
    if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
        return f"{compiled} is older than {source.name} (run `make translations`)"
    return None
