"""The authserver served over real HTTP from the test process, and kit services on it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from authserver.services import clients as client_service
from authserver.services import shim_test_tokens as test_token_service
from authserver.shim import IftttService
from tests.factories import make_tokens

SERVICE_KEYS = ["production-key-" + "p" * 30, "staging-key-" + "s" * 30]


class ThreadedServer:
    """A WSGI app on a loopback port, served by a thread (real sockets, one process)."""

    def __init__(self, wsgi_app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ThreadedServer]]:
    started: list[ThreadedServer] = []

    def _serve(wsgi_app: Any) -> ThreadedServer:
        server = ThreadedServer(wsgi_app)
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.stop()


@pytest.fixture
def authserver(app: Flask, serve: Callable[[Any], ThreadedServer]) -> ThreadedServer:
    """The test app (real database) answering introspection and test tokens over HTTP."""
    return serve(app)


@pytest.fixture
def credentials(app: Flask, user: Any, oauth_client: Any) -> tuple[str, str]:
    server, secret = client_service.register_resource_server("Kit shim")
    test_token_service.allow_test_tokens(
        server.server_id, username=user.username, client_id=oauth_client.client_id
    )
    return server.server_id, secret


@pytest.fixture
def make_service(
    authserver: ThreadedServer, credentials: tuple[str, str]
) -> Callable[..., IftttService]:
    def _make(**overrides: Any) -> IftttService:
        settings: dict[str, Any] = {
            "authserver_url": authserver.base_url,
            "server_id": credentials[0],
            "server_secret": credentials[1],
            "service_keys": SERVICE_KEYS,
            "cache_seconds": 0,
        }
        settings.update(overrides)
        return IftttService(**settings)

    return _make


def shim_client(service: IftttService) -> Any:
    shim = Flask("kit_shim")
    service.init_app(shim)
    return shim.test_client()


@pytest.fixture
def access_token(user: Any, oauth_client: Any) -> str:
    return str(make_tokens(user, oauth_client)["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Request-ID": "kit-test"}


TRIGGER_PATH = "/ifttt/v1/triggers/new_thing"
