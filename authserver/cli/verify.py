"""`authserver ifttt-check`: run IFTTT's connection checks against a deployment.

Everything goes over HTTP, as IFTTT would see it: a browser-like session logs in
and consents, then the token endpoint and user info are called exactly the way
IFTTT's connection test calls them.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urljoin
from urllib.parse import urlsplit

import click
import requests

USER_INFO_PATH = "/ifttt/v1/user/info"
MAX_REDIRECTS = 10


class CheckFailedError(Exception):
    """One check failed; the message says why, in one line."""


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    """Collect the forms of a page: action, hidden/text inputs and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(values.get("action", ""), values.get("method", "get").lower()))
        elif self.forms and tag == "input" and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value", "")
        elif self.forms and tag == "button" and values.get("name"):
            self.forms[-1].buttons.append((values["name"], values.get("value", "")))


def _post_form(page: requests.Response) -> _Form:
    parser = _FormParser()
    parser.feed(page.text)
    forms = [f for f in parser.forms if f.method == "post"]
    if not forms:
        raise CheckFailedError(
            f"expected a form at {_path(page.url)}, got none (HTTP {page.status_code})"
        )
    return forms[0]


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _describe(response: requests.Response) -> str:
    """Summarize an unexpected answer in one line (never a token)."""
    summary = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return summary
    if isinstance(body, dict):
        if "error" in body:
            summary += f" {body['error']}"
            if body.get("error_description"):
                summary += f" ({body['error_description']})"
        elif isinstance(body.get("errors"), list) and body["errors"]:
            summary += f" errors: {body['errors'][0].get('message')!r}"
    return summary


@dataclass
class Checker:
    """State shared by the checks of one run."""

    base_url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    redirect_uri: str | None
    scope: str
    timeout: float
    http: requests.Session = field(default_factory=requests.Session)
    api: requests.Session = field(default_factory=requests.Session)
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    code: str | None = None
    tokens: dict[str, Any] | None = None
    refreshed: dict[str, Any] | None = None
    #: Seconds `check google --wait` waits before presenting the previous refresh token.
    wait: float = 0.0

    def url(self, path: str) -> str:
        """Return an absolute URL on the deployment."""
        return self.base_url.rstrip("/") + path

    def request(
        self, method: str, url: str, *, browser: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send one request without following redirects; network errors fail the check.

        ``browser`` requests carry the login cookies; the others are IFTTT's
        server-to-server calls and carry none.
        """
        kwargs.setdefault("timeout", self.timeout)
        session = self.http if browser else self.api
        try:
            return session.request(method, url, allow_redirects=False, **kwargs)
        except requests.RequestException as error:
            raise CheckFailedError(
                f"could not reach {url.split('?')[0]}: {type(error).__name__}"
            ) from None

    def token_request(self, **data: str) -> requests.Response:
        """POST to the token endpoint as IFTTT does: form body with the credentials."""
        body = {"client_id": self.client_id, "client_secret": self.client_secret, **data}
        return self.request(
            "POST",
            self.url("/oauth/token"),
            browser=False,
            data=body,
            headers={"Accept": "application/json"},
        )

    def user_info(self, access_token: str) -> requests.Response:
        """GET user info with IFTTT's headers."""
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "Accept-Charset": "utf-8",
            "Accept-Encoding": "gzip, deflate",
            "X-Request-ID": "ifttt-check-" + secrets.token_hex(8),
        }
        return self.request("GET", self.url(USER_INFO_PATH), browser=False, headers=headers)


# The checks -------------------------------------------------------------------------


def check_authorize(c: Checker) -> str:
    """Authorize, log in, consent; expect a redirect with a code and the same state."""
    params = {"client_id": c.client_id, "response_type": "code", "state": c.state}
    if c.scope:
        # No scope: the client's own scopes (RFC 6749 §3.3 lets the server choose).
        params["scope"] = c.scope
    if c.redirect_uri:
        params["redirect_uri"] = c.redirect_uri
    url = c.url("/oauth/authorize?" + urlencode(params))
    logged_in = consented = False
    for _ in range(MAX_REDIRECTS):
        response = c.request("GET", url)
        if response.status_code in (301, 302, 303, 307, 308):
            target = urljoin(url, response.headers.get("Location", ""))
            if not target.startswith(c.base_url.rstrip("/")):
                return _finish_redirect(c, target, consented)
            url = target
            continue
        if response.status_code != 200:
            raise CheckFailedError(f"GET {_path(url)} answered {_describe(response)}")
        form = _post_form(response)
        if "password" in form.fields:
            if logged_in:
                raise CheckFailedError("login failed: check --username and --password")
            form.fields.update(username=c.username, password=c.password)
            logged_in = True
        elif any(name == "decision" for name, _ in form.buttons):
            form.fields["decision"] = "allow"
            consented = True
        else:
            raise CheckFailedError(f"unexpected form at {_path(url)}")
        action = urljoin(url, form.action or url)
        posted = c.request("POST", action, data=form.fields, headers={"Referer": url})
        if posted.status_code not in (301, 302, 303):
            raise CheckFailedError(
                f"POST {_path(action)} answered HTTP {posted.status_code}, not a redirect"
                + (" (wrong username or password?)" if not consented else "")
            )
        url = urljoin(action, posted.headers.get("Location", ""))
        if not url.startswith(c.base_url.rstrip("/")):
            return _finish_redirect(c, url, consented)
    raise CheckFailedError("too many redirects in the authorization flow")


def _finish_redirect(c: Checker, target: str, consented: bool) -> str:
    query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
    if c.redirect_uri and not target.startswith(c.redirect_uri + "?"):
        raise CheckFailedError(f"redirected to {target.split('?')[0]}, not {c.redirect_uri}")
    if "error" in query:
        raise CheckFailedError(f"redirected with error={query['error']}")
    if "code" not in query:
        raise CheckFailedError("redirect carries no code")
    if query.get("state") != c.state:
        raise CheckFailedError("redirect does not carry the same state")
    c.code = query["code"]
    how = "after consent" if consented else "(consent remembered)"
    return f"redirected to the redirect URI with code and state {how}"


def check_code_exchange(c: Checker) -> str:
    """Exchange the code with the credentials in the body, as IFTTT does."""
    if c.code is None:
        raise CheckFailedError("skipped: no authorization code")
    data = {"grant_type": "authorization_code", "code": c.code}
    if c.redirect_uri:
        data["redirect_uri"] = c.redirect_uri
    response = c.token_request(**data)
    if response.status_code != 200:
        raise CheckFailedError(f"token endpoint answered {_describe(response)}")
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        raise CheckFailedError("token response is not application/json")
    body = response.json()
    if str(body.get("token_type", "")).lower() != "bearer" or not body.get("access_token"):
        raise CheckFailedError("token response lacks token_type Bearer or access_token")
    if not body.get("refresh_token"):
        raise CheckFailedError("token response has no refresh_token")
    c.tokens = body
    expiry = f"expires_in={body['expires_in']}" if "expires_in" in body else "no expiry"
    return f"200 with access and refresh token ({expiry})"


def check_user_info(c: Checker) -> str:
    """Call user info with the new token: 200, data.id and data.name."""
    if c.tokens is None:
        raise CheckFailedError("skipped: no access token")
    response = c.user_info(c.tokens["access_token"])
    if response.status_code != 200:
        raise CheckFailedError(f"user info answered {_describe(response)}")
    data = (
        response.json().get("data")
        if response.headers.get("Content-Type", "").startswith("application/json")
        else None
    )
    if not isinstance(data, dict) or not data.get("id") or not data.get("name"):
        raise CheckFailedError("user info body lacks data.id or data.name")
    if len(str(data["id"])) > 200:
        raise CheckFailedError("data.id is longer than 200 characters")
    return f"200 with data.id and data.name ({data['name']!r})"


def check_invalid_code(c: Checker) -> str:
    """Expect 400 invalid_grant for an invalid code."""
    data = {"grant_type": "authorization_code", "code": "invalid-" + secrets.token_hex(16)}
    if c.redirect_uri:
        data["redirect_uri"] = c.redirect_uri
    response = c.token_request(**data)
    error = _json_field(response, "error")
    if response.status_code != 400 or error != "invalid_grant":
        raise CheckFailedError(f"expected 400 invalid_grant, got {_describe(response)}")
    return "400 invalid_grant"


def check_bogus_token(c: Checker) -> str:
    """Expect 401 with an errors array for a bogus token on user info."""
    response = c.user_info("bogus-" + secrets.token_hex(16))
    errors = _json_field(response, "errors")
    if response.status_code != 401 or not isinstance(errors, list) or not errors:
        raise CheckFailedError(f"expected 401 with errors, got {_describe(response)}")
    return "401 with errors"


def check_refresh(c: Checker) -> str:
    """Refresh with the refresh token; the new access token must work."""
    if c.tokens is None:
        raise CheckFailedError("skipped: no refresh token")
    response = c.token_request(grant_type="refresh_token", refresh_token=c.tokens["refresh_token"])
    if response.status_code != 200:
        raise CheckFailedError(f"token endpoint answered {_describe(response)}")
    body = response.json()
    if not body.get("access_token"):
        raise CheckFailedError("refresh response has no access_token")
    if c.user_info(body["access_token"]).status_code != 200:
        raise CheckFailedError("the refreshed access token is refused by user info")
    c.refreshed = body
    rotated = body.get("refresh_token") not in (None, c.tokens["refresh_token"])
    return "200, new access token works" + (" (refresh token rotated)" if rotated else "")


def check_older_refresh_token(c: Checker) -> str:
    """Refresh again with the previous refresh token (IFTTT's older-token check)."""
    if c.tokens is None or c.refreshed is None:
        raise CheckFailedError("skipped: no refresh happened")
    response = c.token_request(grant_type="refresh_token", refresh_token=c.tokens["refresh_token"])
    if response.status_code != 200:
        raise CheckFailedError(
            f"the previous refresh token was refused right after a refresh "
            f"({_describe(response)}); IFTTT's connection test fails on this. Keep "
            "AUTHSERVER_REFRESH_GRACE_SECONDS above 0 (e.g. 120) or turn "
            "AUTHSERVER_REFRESH_ROTATION off"
        )
    body = response.json()
    if not body.get("access_token") or c.user_info(body["access_token"]).status_code != 200:
        raise CheckFailedError(
            "the previous refresh token gave an access token that user info refuses"
        )
    newest = c.refreshed.get("refresh_token")
    if newest and c.user_info(c.refreshed["access_token"]).status_code != 200:
        raise CheckFailedError("using the previous refresh token revoked the newer tokens")
    return "200 again for the previous refresh token"


CHECKS: list[tuple[str, Callable[[Checker], str]]] = [
    ("authorize, log in, consent, redirect with code and state", check_authorize),
    ("code exchange with credentials in the body", check_code_exchange),
    ("user info with the new token", check_user_info),
    ("invalid code is refused with invalid_grant", check_invalid_code),
    ("bogus token on user info is refused with 401", check_bogus_token),
    ("refresh", check_refresh),
    ("older refresh token does not expire immediately", check_older_refresh_token),
]


def _json_field(response: requests.Response, name: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def run_checks(
    checker: Checker,
    echo: Callable[[str], None],
    checks: list[tuple[str, Callable[[Checker], str]]] | None = None,
) -> int:
    """Run every check, print one line each, and return how many failed."""
    failed = 0
    for title, check in CHECKS if checks is None else checks:
        try:
            detail = check(checker)
        except CheckFailedError as error:
            failed += 1
            echo(f"FAIL  {title}: {error}")
        except (ValueError, KeyError, TypeError) as error:
            # A body of the wrong shape (not JSON, missing members) is a failure too.
            failed += 1
            echo(f"FAIL  {title}: unexpected response ({type(error).__name__})")
        else:
            echo(f"PASS  {title}: {detail}")
    return failed


CLIENT_SECRET_ENV = "AUTHSERVER_CHECK_CLIENT_SECRET"  # noqa: S105 (a variable name)
PASSWORD_ENV = "AUTHSERVER_CHECK_PASSWORD"  # noqa: S105 (a variable name)
MAX_SECRET_LENGTH = 4096


def _read_stdin_line(what: str) -> str:
    """Read one line of stdin for a secret; refuse an empty or undecodable one."""
    try:
        line = sys.stdin.readline(MAX_SECRET_LENGTH + 2).rstrip("\r\n")
        line.encode("utf-8")
    except UnicodeError:
        raise click.ClickException(f"the {what} on stdin is not valid UTF-8") from None
    if not line:
        raise click.UsageError(f"no {what} on stdin (one line each, the client secret first)")
    return line


def resolve_secrets(
    client_secret: str | None,
    client_secret_stdin: bool,
    password: str | None,
    password_stdin: bool,
) -> tuple[str, str]:
    """Take the client secret and password from flags, environment or stdin.

    Flags and environment variables are visible to other local users (``ps``,
    ``/proc``); stdin is not, so scripts should prefer it. With both ``--…-stdin``
    flags, the first line is the client secret and the second the password.
    """
    if client_secret_stdin:
        if client_secret is not None:
            raise click.UsageError("give the client secret once: --client-secret-stdin or flag/env")
        client_secret = _read_stdin_line("client secret")
    if password_stdin:
        if password is not None:
            raise click.UsageError("give the password once: --password-stdin or flag/env")
        password = _read_stdin_line("password")
    if not client_secret:
        raise click.UsageError(
            f"missing client secret: --client-secret-stdin, {CLIENT_SECRET_ENV} or --client-secret"
        )
    if not password:
        raise click.UsageError(f"missing password: --password-stdin, {PASSWORD_ENV} or --password")
    return client_secret, password


def check_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every pre-flight check shares (deployment, client, test user)."""
    options = [
        click.option("--base-url", required=True, help="The deployment's public base URL."),
        click.option("--client-id", required=True, help="The platform's client id."),
        click.option(
            "--client-secret",
            envvar=CLIENT_SECRET_ENV,
            default=None,
            help=f"That client's secret (or set {CLIENT_SECRET_ENV}, or use "
            "--client-secret-stdin).",
        ),
        click.option(
            "--client-secret-stdin",
            is_flag=True,
            help="Read the client secret from the first line of stdin.",
        ),
        click.option("--username", required=True, help="A test account (the demo account)."),
        click.option(
            "--password",
            envvar=PASSWORD_ENV,
            default=None,
            help=f"That account's password (or set {PASSWORD_ENV}, or use --password-stdin).",
        ),
        click.option(
            "--password-stdin",
            is_flag=True,
            help="Read the password from stdin (the line after the client secret, if both).",
        ),
        click.option(
            "--redirect-uri",
            default=None,
            help="The platform's redirect URI (default: the client's only registered URI).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 120),
            default=10.0,
            show_default=True,
            help="Seconds to wait for each answer.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_checker(
    *,
    base_url: str,
    client_id: str,
    client_secret: str | None,
    client_secret_stdin: bool,
    username: str,
    password: str | None,
    password_stdin: bool,
    redirect_uri: str | None,
    scope: str,
    timeout: float,
) -> Checker:
    """Validate the shared options and build the checker."""
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise click.BadParameter("must be an http(s) URL", param_hint="--base-url")
    secret, password_value = resolve_secrets(
        client_secret, client_secret_stdin, password, password_stdin
    )
    return Checker(
        base_url=base_url.rstrip("/"),
        client_id=client_id,
        client_secret=secret,
        username=username,
        password=password_value,
        redirect_uri=redirect_uri,
        scope=scope,
        timeout=timeout,
    )


def finish(checks: list[tuple[str, Callable[[Checker], str]]], checker: Checker) -> None:
    """Run the checks, print one line each and a summary; exit 1 if any failed."""
    failed = run_checks(checker, click.echo, checks)
    total = len(checks)
    if failed:
        click.echo(f"{failed} of {total} checks failed.")
        raise SystemExit(1)
    click.echo(f"All {total} checks passed.")


@click.command("ifttt-check")
@check_options
@click.option("--scope", default="ifttt", show_default=True, help="Scope IFTTT requests.")
def ifttt_check_command(scope: str, **options: Any) -> None:
    """Run IFTTT's connection-test checks against a running deployment over HTTP.

    Prints one PASS/FAIL line per check; exits 1 when any check fails. The test
    account ends up with one more connection (a token family) to the client.
    The client secret and password come from flags, environment variables
    (AUTHSERVER_CHECK_CLIENT_SECRET, AUTHSERVER_CHECK_PASSWORD) or stdin.
    """
    finish(CHECKS, make_checker(scope=scope, **options))
