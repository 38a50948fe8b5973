"""The paths docs/architecture.md walks a reader through are the paths requests take.

Each request is traced with ``sys.setprofile``: the files of ours in which a function
ran, minus the app-wide hooks the page names, must be exactly the page's list. A new
stop on the path, or one that left it, fails here until the page says so.
"""

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authserver.services import clients as client_service
from tests.factories import basic_auth
from tests.factories import make_confidential_client
from tests.factories import make_tokens
from tests.factories import make_user

PACKAGE = Path(__file__).resolve().parents[2] / "authserver"
PAGE = PACKAGE.parent / "docs" / "architecture.md"
# Run around every request; the page names them and leaves them out of the count.
HOOKS = {"app_setup.py", "logs.py", "metrics.py", "postgres.py", "request_cycle.py"}


def documented_path(heading: str) -> list[str]:
    """Return the files of the numbered list under this heading, in order."""
    text = PAGE.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. `([^`]+)`", section, flags=re.MULTILINE)


def files_run_by(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Call and return its result and the files of ours in which a function ran."""
    root = f"{PACKAGE}/"
    seen: dict[str, None] = {}

    def profile(frame: Any, event: str, arg: Any) -> None:
        filename = frame.f_code.co_filename
        if event == "call" and filename.startswith(root):
            seen.setdefault(filename[len(root) :], None)

    sys.setprofile(profile)
    try:
        result = call()
    finally:
        sys.setprofile(None)
    return result, [name for name in seen if name not in HOOKS]


def test_a_refresh_takes_the_documented_path(refresh):
    user = make_user()
    oauth_client, secret = make_confidential_client()
    # A first refresh warms what is read once per process (caches, compiled SQL).
    first = make_tokens(user, oauth_client)
    assert refresh(first["refresh_token"], oauth_client.client_id, secret).status_code == 200
    tokens = make_tokens(user, oauth_client)

    response, files = files_run_by(
        lambda: refresh(tokens["refresh_token"], oauth_client.client_id, secret)
    )

    assert response.status_code == 200
    documented = documented_path("The path of one refresh request")
    assert sorted(files) == sorted(documented)


def test_an_introspection_takes_the_documented_path(http):
    user = make_user()
    oauth_client, _secret = make_confidential_client()
    server, secret = client_service.register_resource_server("Shim")
    headers = basic_auth(server.server_id, secret)
    first = make_tokens(user, oauth_client)
    assert http.post("/oauth/introspect", data={"token": first["access_token"]}, headers=headers)
    tokens = make_tokens(user, oauth_client)

    response, files = files_run_by(
        lambda: http.post(
            "/oauth/introspect", data={"token": tokens["access_token"]}, headers=headers
        )
    )

    assert response.get_json()["active"] is True
    documented = documented_path("The path of one introspection")
    assert sorted(files) == sorted(documented)
