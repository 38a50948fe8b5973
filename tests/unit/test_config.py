import inspect
import os
import re

import pytest

from authserver import config as config_module
from authserver import create_app
from authserver.config import DEFAULTS
from authserver.config import load_config
from authserver.config import validate_config
from authserver.errors import ConfigError
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AUTHSERVER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(tmp_path / "instance"))


def settings_from_env(tmp_path, monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv("AUTHSERVER_" + key, value)
    settings = load_config(str(tmp_path / "instance"))
    validate_config(settings)
    return settings


def assert_config_error(tmp_path, monkeypatch, variable, **env):
    with pytest.raises(ConfigError) as caught:
        settings_from_env(tmp_path, monkeypatch, **env)
    assert f"AUTHSERVER_{variable}" in caught.value.message
    assert "\n" not in caught.value.message
    return caught.value.message


def test_defaults_give_a_working_local_configuration(tmp_path, monkeypatch):
    settings = settings_from_env(tmp_path, monkeypatch)
    assert settings["ISSUER"] == "http://127.0.0.1:8000"
    assert settings["DATABASE_URL"] == "sqlite:///" + str(tmp_path / "instance" / "authserver.db")
    assert settings["ACCESS_TOKEN_TTL"] == DEFAULTS["ACCESS_TOKEN_TTL"]


def test_environment_overrides_defaults_with_parsed_types(tmp_path, monkeypatch):
    settings = settings_from_env(
        tmp_path,
        monkeypatch,
        ACCESS_TOKEN_TTL=" 7200 ",
        REFRESH_ROTATION="off",
        ISSUER="https://auth.example",
        DATABASE_URL="postgresql://u@db/auth",
    )
    assert settings["ACCESS_TOKEN_TTL"] == 7200
    assert settings["REFRESH_ROTATION"] is False
    assert settings["ISSUER"] == "https://auth.example"
    assert settings["DATABASE_URL"] == "postgresql://u@db/auth"


def test_explicit_overrides_win_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHSERVER_ACCESS_TOKEN_TTL", "100")
    settings = load_config(str(tmp_path), {"ACCESS_TOKEN_TTL": 200})
    assert settings["ACCESS_TOKEN_TTL"] == 200


@pytest.mark.parametrize("value", ["abc", "1.5", "", "ten", "0x10", "1e3"])
def test_non_numeric_lifetime_rejected(tmp_path, monkeypatch, value):
    message = assert_config_error(tmp_path, monkeypatch, "ACCESS_TOKEN_TTL", ACCESS_TOKEN_TTL=value)
    assert "whole number" in message


@pytest.mark.parametrize(
    "key",
    [
        "AUTH_CODE_TTL",
        "ACCESS_TOKEN_TTL",
        "REFRESH_GRACE_SECONDS",
        "REFRESH_MAX_REPLAYS",
        "DB_TIMEOUT_SECONDS",
        "PROXY_HOPS",
        "MAX_CONTENT_LENGTH",
    ],
)
def test_negative_value_rejected(tmp_path, monkeypatch, key):
    message = assert_config_error(tmp_path, monkeypatch, key, **{key: "-1"})
    assert "negative" in message


@pytest.mark.parametrize("key", ["AUTH_CODE_TTL", "DB_TIMEOUT_SECONDS"])
def test_zero_rejected_where_it_makes_no_sense(tmp_path, monkeypatch, key):
    assert_config_error(tmp_path, monkeypatch, key, **{key: "0"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ACCESS_TOKEN_TTL", "100000000000"),
        ("AUTH_CODE_TTL", "99999999999"),
        ("DB_TIMEOUT_SECONDS", "3601"),
    ],
)
def test_absurdly_large_value_rejected(tmp_path, monkeypatch, key, value):
    assert_config_error(tmp_path, monkeypatch, key, **{key: value})


def test_ten_year_access_token_lifetime_accepted(tmp_path, monkeypatch):
    ten_years = str(config_module.MAX_LIFETIME_SECONDS)
    settings = settings_from_env(tmp_path, monkeypatch, ACCESS_TOKEN_TTL=ten_years)
    assert settings["ACCESS_TOKEN_TTL"] == int(ten_years)


def test_access_ttl_zero_means_never_expires_and_allows_any_grace(tmp_path, monkeypatch):
    settings = settings_from_env(
        tmp_path, monkeypatch, ACCESS_TOKEN_TTL="0", REFRESH_GRACE_SECONDS="600"
    )
    assert settings["ACCESS_TOKEN_TTL"] == 0


def test_grace_longer_than_access_ttl_rejected(tmp_path, monkeypatch):
    message = assert_config_error(
        tmp_path,
        monkeypatch,
        "REFRESH_GRACE_SECONDS",
        ACCESS_TOKEN_TTL="60",
        REFRESH_GRACE_SECONDS="61",
    )
    assert "AUTHSERVER_ACCESS_TOKEN_TTL" in message


def test_grace_equal_to_access_ttl_accepted(tmp_path, monkeypatch):
    settings = settings_from_env(
        tmp_path, monkeypatch, ACCESS_TOKEN_TTL="60", REFRESH_GRACE_SECONDS="60"
    )
    assert settings["REFRESH_GRACE_SECONDS"] == 60


@pytest.mark.parametrize("key", ["REFRESH_ROTATION", "REFRESH_REUSE_REVOKES_FAMILY"])
@pytest.mark.parametrize("value", ["maybe", "2", "", "tru"])
def test_bad_boolean_rejected(tmp_path, monkeypatch, key, value):
    message = assert_config_error(tmp_path, monkeypatch, key, **{key: value})
    assert "true or false" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_boolean_spellings_accepted(tmp_path, monkeypatch, value, expected):
    settings = settings_from_env(tmp_path, monkeypatch, REFRESH_ROTATION=value)
    assert settings["REFRESH_ROTATION"] is expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@db/auth",
        "postgres://u@db/auth",
        "postgresql+psycopg2://u@db/a",
        "oracle://x",
        "just-a-path.db",
        "/var/lib/authserver.db",
    ],
)
def test_unknown_database_scheme_rejected(tmp_path, monkeypatch, url):
    assert_config_error(tmp_path, monkeypatch, "DATABASE_URL", DATABASE_URL=url)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/authserver.db",
        "postgresql://u@db/auth",
        "postgresql+psycopg://u:p@db:5432/auth",
    ],
)
def test_supported_database_schemes_accepted(tmp_path, monkeypatch, url):
    assert settings_from_env(tmp_path, monkeypatch, DATABASE_URL=url)["DATABASE_URL"] == url


@pytest.mark.parametrize(
    "issuer",
    [
        "http://auth.example",
        "http://192.168.1.10:8000",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example",
    ],
)
def test_plain_http_issuer_outside_local_hosts_rejected(tmp_path, monkeypatch, issuer):
    message = assert_config_error(tmp_path, monkeypatch, "ISSUER", ISSUER=issuer)
    assert "https" in message


@pytest.mark.parametrize(
    "issuer",
    [
        "http://127.0.0.1",
        "http://127.0.0.1:8000",
        "http://localhost",
        "http://localhost:5000",
        "http://[::1]:8000",
        "https://auth.example",
        "https://auth.example/base",
    ],
)
def test_https_or_local_issuer_accepted(tmp_path, monkeypatch, issuer):
    assert settings_from_env(tmp_path, monkeypatch, ISSUER=issuer)["ISSUER"] == issuer


@pytest.mark.parametrize(
    "issuer",
    [
        "auth.example",
        "ftp://auth.example",
        "https://",
        "https://auth.example/?x=1",
        "https://auth.example/#frag",
    ],
)
def test_malformed_issuer_rejected(tmp_path, monkeypatch, issuer):
    assert_config_error(tmp_path, monkeypatch, "ISSUER", ISSUER=issuer)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RATE_LIMITS", "sometimes"),
        ("LOG_FORMAT", "xml"),
        ("USER_URL_TEMPLATE", "https://x/{email}"),
        ("USER_URL_TEMPLATE", "https://x/{username!r}"),
        ("USER_URL_TEMPLATE", "https://x/{id:>40}"),
        ("USER_URL_TEMPLATE", "https://x/{id.__class__}"),
        ("USER_URL_TEMPLATE", "https://x/{username[0]}"),
        ("REDIS_URL", "http://cache"),
    ],
)
def test_other_invalid_settings_rejected(tmp_path, monkeypatch, key, value):
    assert_config_error(tmp_path, monkeypatch, key, **{key: value})


def test_short_secret_key_rejected(tmp_path, monkeypatch):
    assert_config_error(tmp_path, monkeypatch, "SECRET_KEY", SECRET_KEY="changeme")


def test_explicit_secret_key_is_used_and_no_file_written(tmp_path, monkeypatch):
    settings = settings_from_env(tmp_path, monkeypatch, SECRET_KEY=TEST_SECRET_KEY)
    assert settings["SECRET_KEY"] == TEST_SECRET_KEY
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_secret_key_generated_once_with_owner_only_mode(tmp_path):
    instance = tmp_path / "instance"
    first = load_config(str(instance))["SECRET_KEY"]
    key_file = instance / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() == first
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert load_config(str(instance))["SECRET_KEY"] == first
    assert [p.name for p in instance.iterdir()] == ["secret_key"]  # no temp files left


def test_secret_key_differs_between_instances(tmp_path):
    one = load_config(str(tmp_path / "one"))["SECRET_KEY"]
    two = load_config(str(tmp_path / "two"))["SECRET_KEY"]
    assert one != two
    source = inspect.getsource(config_module)
    assert one not in source


def test_empty_secret_key_file_is_a_config_error(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "secret_key").write_text("\n")
    with pytest.raises(ConfigError, match="secret_key"):
        load_config(str(instance))


def test_unwritable_instance_folder_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(str(blocker / "instance"))
    assert "AUTHSERVER_INSTANCE_PATH" in caught.value.message


def test_create_app_uses_generated_key_from_instance_folder(tmp_path):
    app = create_app({"DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db")})
    assert app.instance_path == str(tmp_path / "instance")
    assert app.secret_key == (tmp_path / "instance" / "secret_key").read_text().strip()
    again = create_app({"DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db")})
    assert again.secret_key == app.secret_key


def test_create_app_validates_explicit_config(tmp_path):
    with pytest.raises(ConfigError, match="AUTHSERVER_ISSUER"):
        create_app(
            {
                "ISSUER": "http://auth.example",
                "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db"),
            }
        )


@pytest.mark.parametrize(
    ("issuer", "secure"), [("https://auth.example", True), ("http://localhost", False)]
)
def test_cookie_flags_follow_issuer_scheme(tmp_path, issuer, secure):
    app = create_app(
        {
            "ISSUER": issuer,
            "SECRET_KEY": TEST_SECRET_KEY,
            "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db"),
        }
    )
    assert app.config["SESSION_COOKIE_SECURE"] is secure
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
