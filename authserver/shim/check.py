"""IFTTT's endpoint tests, run against a running shim (``authserver shim-check``).

The checks follow IFTTT's endpoint testing tool as far as it is documented: the
service key on ``status`` and ``test/setup``, the test token, every trigger, action
and query named in the samples (with and without a valid bearer token), ``limit``,
``meta`` and ordering of trigger events, skipping, and field options/validations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from typing import Any

import requests

__all__ = ["CheckResult", "ShimChecker", "run_shim_checks"]

MIN_TRIGGER_ITEMS = 3  # IFTTT's "returns at least three items".
SINGULAR = {"triggers": "trigger", "actions": "action", "queries": "query"}
BOGUS_TOKEN = "shim-check-bogus-token-" + "0" * 20  # deliberately invalid


class CheckFailedError(Exception):
    """One check failed; the message says what was expected and what came."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    title: str
    passed: bool
    detail: str

    def line(self) -> str:
        """Return the check as one printable line."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.title}: {self.detail}"


@dataclass
class ShimChecker:
    """Talks to one shim the way IFTTT's endpoint tests do."""

    shim_url: str
    service_key: str
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    access_token: str | None = None
    samples: dict[str, Any] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        token: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> requests.Response:
        """Send one request with IFTTT's headers."""
        headers = {
            "Accept": "application/json",
            "Accept-Charset": "utf-8",
            "X-Request-ID": str(uuid.uuid4()),
            "User-Agent": "IFTTT-Protocol/v1",
            "IFTTT-Test-Mode": "1",
        }
        if key is not None:
            headers["IFTTT-Service-Key"] = key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(
            method,
            self.shim_url.rstrip("/") + path,
            json=body,
            headers=headers,
            timeout=self.timeout,
        )


def _expect(response: requests.Response, status: int) -> Any:
    if response.status_code != status:
        raise CheckFailedError(f"expected {status}, got {response.status_code}")
    if status == 200 and not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise CheckFailedError(f"{status} without a JSON body") from None


def _expect_errors(response: requests.Response, status: int) -> None:
    body = _expect(response, status)
    errors = body.get("errors") if isinstance(body, dict) else None
    if not (isinstance(errors, list) and errors and isinstance(errors[0], dict)):
        raise CheckFailedError(f'{status} without an "errors" array')
    if not isinstance(errors[0].get("message"), str):
        raise CheckFailedError('"errors" entry without a "message"')


def _data(response: requests.Response) -> Any:
    body = _expect(response, 200)
    if not isinstance(body, dict) or "data" not in body:
        raise CheckFailedError('200 without a top-level "data"')
    return body["data"]


# The checks ----------------------------------------------------------------------

Check = tuple[str, Callable[[], str]]


def _status_ok(c: ShimChecker) -> str:
    _expect(c.call("GET", "/ifttt/v1/status", key=c.service_key), 200)
    return "200 with the service key"


def _status_invalid(c: ShimChecker) -> str:
    _expect_errors(c.call("GET", "/ifttt/v1/status", key="INVALID"), 401)
    return "401 with IFTTT-Service-Key: INVALID"


def _setup_invalid(c: ShimChecker) -> str:
    _expect_errors(c.call("POST", "/ifttt/v1/test/setup", key="INVALID", body={}), 401)
    return "401 with IFTTT-Service-Key: INVALID"


def _setup(c: ShimChecker) -> str:
    data = _data(c.call("POST", "/ifttt/v1/test/setup", key=c.service_key, body={}))
    token = data.get("accessToken") if isinstance(data, dict) else None
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise CheckFailedError("no data.accessToken")
    if not isinstance(samples, dict):
        raise CheckFailedError("no data.samples object")
    c.access_token, c.samples = token, samples
    return f"accessToken and samples ({', '.join(sorted(samples)) or 'empty'})"


def _token_works(c: ShimChecker) -> str:
    for kind, slug, body in _sample_calls(c):
        if kind in ("triggers", "queries"):
            _data(c.call("POST", f"/ifttt/v1/{kind}/{slug}", token=c.access_token, body=body))
            return f"accepted by {SINGULAR[kind]} {slug}"
    raise CheckFailedError("the samples name no trigger or query to try the token on")


def _trigger_items(c: ShimChecker, slug: str, fields: Any) -> str:
    # IFTTT's "with extra data": unknown keys must be ignored.
    body = {
        "triggerFields": fields,
        "trigger_identity": uuid.uuid4().hex + uuid.uuid4().hex[:8],
        "extra_" + uuid.uuid4().hex[:8]: {"x": 1},
    }
    items = _data(c.call("POST", f"/ifttt/v1/triggers/{slug}", token=c.access_token, body=body))
    if not isinstance(items, list):
        raise CheckFailedError("data is not an array")
    if len(items) < MIN_TRIGGER_ITEMS:
        raise CheckFailedError(f"{len(items)} items, IFTTT expects at least {MIN_TRIGGER_ITEMS}")
    stamps = []
    for number, item in enumerate(items, 1):
        meta = item.get("meta") if isinstance(item, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("id"), str) or not meta["id"]:
            raise CheckFailedError(f"item #{number} has no meta.id")
        stamp = meta.get("timestamp")
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise CheckFailedError(f"item #{number} has no integer meta.timestamp")
        stamps.append(stamp)
    if stamps != sorted(stamps, reverse=True):
        raise CheckFailedError("items are not ordered newest first (meta.timestamp)")
    return f"{len(items)} items with meta.id and meta.timestamp, newest first"


def _trigger_limit(c: ShimChecker, slug: str, fields: Any) -> str:
    for limit in (1, 0):
        body = {"triggerFields": fields, "limit": limit}
        items = _data(c.call("POST", f"/ifttt/v1/triggers/{slug}", token=c.access_token, body=body))
        if not isinstance(items, list) or len(items) != limit:
            got = len(items) if isinstance(items, list) else "no array"
            raise CheckFailedError(f"limit={limit} gave {got} items")
    return "limit=1 gives 1 item, limit=0 gives 0"


def _refuses_tokens(c: ShimChecker, kind: str, slug: str, body: Any) -> str:
    for token in (BOGUS_TOKEN, None):
        response = c.call("POST", f"/ifttt/v1/{kind}/{slug}", token=token, body=body)
        try:
            _expect_errors(response, 401)
        except CheckFailedError as error:
            which = "bogus" if token else "missing"
            raise CheckFailedError(f"{which} token: {error}") from None
    return "401 with errors for a bogus and a missing token"


def _action(c: ShimChecker, slug: str, fields: Any) -> str:
    body = {"actionFields": fields}
    data = _data(c.call("POST", f"/ifttt/v1/actions/{slug}", token=c.access_token, body=body))
    if not (isinstance(data, list) and data and all(isinstance(d, dict) for d in data)):
        raise CheckFailedError("data is not an array of objects")
    if not all(isinstance(d.get("id"), str) and d["id"] for d in data):
        raise CheckFailedError("an action record has no id")
    return f"{len(data)} record(s) with id"


def _skip(c: ShimChecker, slug: str, fields: Any) -> str:
    body = {"actionFields": fields}
    response = c.call("POST", f"/ifttt/v1/actions/{slug}", token=c.access_token, body=body)
    _expect_errors(response, 400)
    if response.json()["errors"][0].get("status") != "SKIP":
        raise CheckFailedError('400 without "status": "SKIP"')
    return "400 with status SKIP"


def _query(c: ShimChecker, slug: str, fields: Any) -> str:
    body = {"queryFields": fields}
    data = _data(c.call("POST", f"/ifttt/v1/queries/{slug}", token=c.access_token, body=body))
    if not isinstance(data, list):
        raise CheckFailedError("data is not an array")
    return f"{len(data)} item(s)"


def _validation(c: ShimChecker, kind: str, slug: str, name: str, cases: Any) -> str:
    if not isinstance(cases, dict):
        raise CheckFailedError("samples give no valid/invalid values")
    path = f"/ifttt/v1/{kind}/{slug}/fields/{name}/validate"
    for label, expected in (("valid", True), ("invalid", False)):
        if label not in cases:
            continue
        data = _data(c.call("POST", path, token=c.access_token, body={"value": cases[label]}))
        if not isinstance(data, dict) or data.get("valid") is not expected:
            raise CheckFailedError(f"the {label} sample did not answer valid={expected}")
        if not expected and not isinstance(data.get("message"), str):
            raise CheckFailedError("an invalid value without a message")
    return "valid and invalid samples answered as such"


def _options(c: ShimChecker, kind: str, slug: str, name: str) -> str:
    path = f"/ifttt/v1/{kind}/{slug}/fields/{name}/options"
    response = c.call("POST", path, token=c.access_token, body={})
    if response.status_code == 404:
        return "no options (a plain field)"
    data = _data(response)
    if not isinstance(data, list):
        raise CheckFailedError("data is not an array")
    for option in data:
        if not (isinstance(option, dict) and isinstance(option.get("label"), str)) or not (
            "value" in option or isinstance(option.get("values"), list)
        ):
            raise CheckFailedError('an option without "label" and "value"')
    return f"{len(data)} option(s) with label and value"


def _sample_calls(c: ShimChecker) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind, key in (("triggers", "triggerFields"), ("actions", "actionFields")):
        for slug, fields in _section(c, kind).items():
            yield kind, slug, {key: fields}
    for slug, fields in _section(c, "queries").items():
        yield "queries", slug, {"queryFields": fields}


def _section(c: ShimChecker, name: str) -> dict[str, Any]:
    section = c.samples.get(name)
    return section if isinstance(section, dict) else {}


def _sample_checks(c: ShimChecker) -> Iterator[Check]:
    """Yield the checks that depend on what test/setup's samples name."""
    for slug, fields in _section(c, "triggers").items():
        yield f"trigger {slug}", partial(_trigger_items, c, slug, fields)
        yield f"trigger {slug} limit", partial(_trigger_limit, c, slug, fields)
    for kind, slug, body in _sample_calls(c):
        title = f"{SINGULAR[kind]} {slug} without a valid token"
        yield title, partial(_refuses_tokens, c, kind, slug, body)
    for slug, fields in _section(c, "actions").items():
        yield f"action {slug}", partial(_action, c, slug, fields)
    for slug, fields in _section(c, "actionRecordSkipping").items():
        yield f"action {slug} skipping", partial(_skip, c, slug, fields)
    for slug, fields in _section(c, "queries").items():
        yield f"query {slug}", partial(_query, c, slug, fields)
    for kind, section in (
        ("triggers", "triggerFieldValidations"),
        ("actions", "actionFieldValidations"),
    ):
        for slug, by_field in _section(c, section).items():
            for name, cases in (by_field if isinstance(by_field, dict) else {}).items():
                title = f"{kind[:-1]} {slug} field {name} validation"
                yield title, partial(_validation, c, kind, slug, name, cases)
    for kind in ("triggers", "actions"):
        for slug, fields in _section(c, kind).items():
            for name in fields if isinstance(fields, dict) else {}:
                title = f"{kind[:-1]} {slug} field {name} options"
                yield title, partial(_options, c, kind, slug, name)


def run_shim_checks(checker: ShimChecker, echo: Callable[[str], None]) -> list[CheckResult]:
    """Run every check, print one line each as it finishes, and return the results."""
    results: list[CheckResult] = []

    def run(title: str, check: Callable[[], str]) -> bool:
        try:
            detail = check()
        except CheckFailedError as error:
            result = CheckResult(title, False, str(error))
        except requests.RequestException as error:
            result = CheckResult(title, False, f"no answer ({type(error).__name__})")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            result = CheckResult(title, False, f"unexpected response ({type(error).__name__})")
        else:
            result = CheckResult(title, True, detail)
        results.append(result)
        echo(result.line())
        return result.passed

    run("status", lambda: _status_ok(checker))
    run("status with an invalid key", lambda: _status_invalid(checker))
    run("test/setup with an invalid key", lambda: _setup_invalid(checker))
    if not run("test/setup", lambda: _setup(checker)):
        return results
    run("test/setup accessToken works", lambda: _token_works(checker))
    for title, check in list(_sample_checks(checker)):
        run(title, check)
    return results
