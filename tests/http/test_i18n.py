"""Every page in every language: catalogs complete, compiled, chosen from Accept-Language."""

import html as html_lib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from authserver.i18n import LOCALES
from tests.conftest import csrf_token_of
from tests.factories import authorize_url
from tests.factories import make_tokens

REPO = Path(__file__).resolve().parents[2]
TRANSLATIONS = REPO / "translations"
LANGUAGES = [locale for locale in LOCALES if locale != "en"]


def catalog(locale):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def source_messages():
    """Every message id marked for translation in the code and templates."""
    method_map = [("authserver/**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2)}
    found = set()
    for _, _, message, _, _ in extract_from_dir(
        str(REPO), method_map, keywords=keywords, comment_tags=()
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def visible_text(page):
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", text))


@pytest.mark.parametrize("locale", LANGUAGES)
def test_catalog_translates_every_message_of_the_code(locale):
    wanted = source_messages()
    assert len(wanted) > 40
    entries = {m.id: m for m in catalog(locale) if m.id}
    missing = sorted(wanted - set(entries))
    assert missing == [], f"run `make messages` and translate these in {locale}: {missing}"
    untranslated = sorted(i for i in wanted if not entries[i].string or entries[i].fuzzy)
    assert untranslated == [], f"untranslated or fuzzy in {locale}: {untranslated}"
    # Every placeholder survives translation (a missing one raises at render time).
    for message_id in wanted:
        placeholders = set(re.findall(r"%\(\w+\)s", message_id))
        assert placeholders == set(re.findall(r"%\(\w+\)s", entries[message_id].string)), (
            locale,
            message_id,
        )


@pytest.mark.parametrize("locale", LANGUAGES)
def test_compiled_catalog_matches_its_source(locale):
    folder = TRANSLATIONS / locale / "LC_MESSAGES"
    compiled = folder / "messages.mo"
    assert compiled.exists(), f"{compiled} missing: run `make translations`"
    with compiled.open("rb") as handle:
        built = {m.id: m.string for m in read_mo(handle) if m.id}
    source = {m.id: m.string for m in catalog(locale) if m.id and not m.fuzzy}
    assert built == source, f"{compiled} is stale: run `make translations`"


def test_make_translations_builds_catalogs_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        relative = name.decode()
        target = clone / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / relative).is_file():
            shutil.copy2(REPO / relative, target)
    assert not list(clone.glob("translations/*/LC_MESSAGES/*.mo")), "compiled catalogs in git"
    venv = REPO / ".venv"
    done = subprocess.run(
        # -o: the venv exists already; make must not reinstall it from the copy.
        ["make", "-C", str(clone), "translations", f"VENV={venv}", "-o", f"{venv}/.installed"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    built = sorted(p.parent.parent.name for p in clone.glob("translations/*/LC_MESSAGES/*.mo"))
    assert built == sorted(LANGUAGES)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("es-MX", "es"),
        ("fr-CA;q=0.8, ja;q=0.9", "ja"),
        ("zh-CN,zh;q=0.9", "en"),
        ("", "en"),
        ("*", "en"),
        ("en-GB,fr;q=0.5", "en"),
    ],
)
def test_language_follows_accept_language_with_english_fallback(http, header, expected):
    page = http.get("/login", headers={"Accept-Language": header} if header else {})
    assert page.status_code == 200
    assert f'<html lang="{expected}">' in page.get_data(as_text=True)
    assert "Accept-Language" in page.headers["Vary"]


@pytest.fixture
def every_page(http, user, oauth_client, login_as):
    """Fetch each page users see, in a given language; return {name: html}."""
    make_tokens(user, oauth_client)

    def fetch(locale):
        headers = {"Accept-Language": locale}
        pages = {}
        http.delete_cookie("authserver_session")
        pages["login"] = http.get("/login", headers=headers)
        pages["login-error"] = http.post(
            "/login",
            headers=headers,
            data={
                "csrf_token": csrf_token_of(pages["login"].get_data(as_text=True)),
                "username": "walter",
                "password": "wrong password",
            },
        )
        pages["signed-out"] = http.get("/logout", headers=headers)
        pages["not-found"] = http.get("/no-such-page", headers=headers)
        pages["oauth-error"] = http.get(
            authorize_url("no-such-client"), headers=headers, follow_redirects=False
        )
        login_as(user)
        pages["consent"] = http.get(authorize_url(oauth_client.client_id), headers=headers)
        pages["switch-account"] = http.get("/login?switch=1&next=/account/apps", headers=headers)
        pages["apps"] = http.get("/account/apps", headers=headers)
        pages["sign-out"] = http.get("/logout", headers=headers)
        pages["not-allowed"] = http.put("/account/apps", headers=headers)
        return pages

    return fetch


EXPECTED_STATUS = {
    "login": 200,
    "login-error": 401,
    "signed-out": 200,
    "not-found": 404,
    "oauth-error": 400,
    "consent": 200,
    "switch-account": 200,
    "apps": 200,
    "sign-out": 200,
    "not-allowed": 405,
}


@pytest.mark.parametrize("locale", LANGUAGES)
def test_every_page_renders_in_every_language(every_page, locale):
    english = every_page("en")
    translated = every_page(locale)
    entries = {m.id: m.string for m in catalog(locale) if m.id}
    # English texts that must not survive in a translated page (whole words, long
    # enough not to be names; placeholders and shared words left out).
    leftovers = [
        message_id
        for message_id, text in entries.items()
        if "%(" not in message_id and len(message_id) >= 4 and text != message_id
    ]
    for name, response in translated.items():
        assert response.status_code == EXPECTED_STATUS[name], (name, response.status_code)
        page = response.get_data(as_text=True)
        assert f'<html lang="{locale}">' in page, name
        assert page != english[name].get_data(as_text=True), name
        text = visible_text(page)
        for message_id in leftovers:
            assert not re.search(rf"(?<!\w){re.escape(message_id)}(?!\w)", text), (
                name,
                locale,
                message_id,
            )


def test_english_pages_name_the_service(every_page):
    pages = every_page("en")
    for name, response in pages.items():
        page = response.get_data(as_text=True)
        assert "· authserver</title>" in page, name
