"""Realtime API notifications, against a local fake of realtime.ifttt.com."""

import logging
import uuid
from typing import Any

import pytest
from flask import Flask
from flask import request

from authserver.shim import IftttService
from authserver.shim import RealtimeClient
from authserver.shim import RealtimeError

KEY = "service-key-" + "r" * 30


class FakeRealtime:
    """Records each notification; answers from a script of statuses (then 200)."""

    base_url: str

    def __init__(self):
        self.calls: list[dict[str, Any]] = []
        self.script: list[int] = []
        self.app = Flask("fake_realtime")
        self.app.add_url_rule("/v1/notifications", "notify", self.notify, methods=["POST"])

    def notify(self):
        self.calls.append({"headers": dict(request.headers), "body": request.get_json()})
        status = self.script.pop(0) if self.script else 200
        return {"data": {}} if status == 200 else ({"errors": [{"message": "x"}]}, status)


@pytest.fixture
def fake(serve):
    fake = FakeRealtime()
    fake.base_url = serve(fake.app).base_url
    return fake


def client(base_url, **overrides):
    settings = {"service_key": KEY, "base_url": base_url, "backoff": 0.01, "timeout": 5}
    settings.update(overrides)
    return RealtimeClient(**settings)


def test_notify_posts_ids_with_key_and_request_id(fake):
    calls = client(fake.base_url).notify(user_ids=["u1", "u2"], trigger_identities=["t" * 40])
    assert calls == 1
    [call] = fake.calls
    assert call["body"] == {
        "data": [{"user_id": "u1"}, {"user_id": "u2"}, {"trigger_identity": "t" * 40}]
    }
    assert call["headers"]["Ifttt-Service-Key"] == KEY
    assert uuid.UUID(call["headers"]["X-Request-Id"])
    assert call["headers"]["Content-Type"] == "application/json"


def test_notify_batches_2500_ids_into_3_calls(fake):
    ids = [f"user-{n}" for n in range(2500)]
    assert client(fake.base_url).notify(user_ids=ids) == 3
    sizes = [len(call["body"]["data"]) for call in fake.calls]
    assert sizes == [1000, 1000, 500]
    sent = [entry["user_id"] for call in fake.calls for entry in call["body"]["data"]]
    assert sent == ids
    request_ids = {call["headers"]["X-Request-Id"] for call in fake.calls}
    assert len(request_ids) == 3


def test_notify_with_nothing_makes_no_call(fake):
    assert client(fake.base_url).notify() == 0
    assert fake.calls == []


def test_notify_retries_after_503(fake):
    fake.script = [503, 502]
    assert client(fake.base_url).notify(user_ids=["u1"]) == 1
    assert len(fake.calls) == 3
    assert all(call["body"] == {"data": [{"user_id": "u1"}]} for call in fake.calls)


def test_notify_gives_up_after_the_retries(fake):
    fake.script = [503] * 10
    with pytest.raises(RealtimeError, match="503"):
        client(fake.base_url, retries=2).notify(user_ids=["u1"])
    assert len(fake.calls) == 3


def test_notify_does_not_retry_a_4xx(fake):
    fake.script = [401]
    with pytest.raises(RealtimeError, match="401"):
        client(fake.base_url).notify(user_ids=["u1"])
    assert len(fake.calls) == 1


def test_notify_retries_network_errors_then_fails():
    with pytest.raises(RealtimeError, match="unreachable"):
        client("http://127.0.0.1:9", retries=2).notify(user_ids=["u1"])


def test_notify_async_sends_in_the_background(fake):
    realtime = client(fake.base_url)
    assert realtime.notify_async(user_ids=[f"u{n}" for n in range(1500)]) is True
    realtime.join()
    assert [len(call["body"]["data"]) for call in fake.calls] == [1000, 500]


def test_notify_async_refuses_when_the_queue_is_full(fake, caplog):
    realtime = client(fake.base_url, queue_size=1)
    # Hold the worker back (it looks alive but takes nothing): the queue fills at once.
    realtime._worker = _NotStarted()
    with caplog.at_level(logging.WARNING, "authserver.shim"):
        assert realtime.notify_async(user_ids=["a"]) is True
        assert realtime.notify_async(user_ids=["b"]) is False
    assert "realtime queue full" in caplog.text


class _NotStarted:
    def is_alive(self):
        return True


def test_notify_async_survives_failures(fake, caplog):
    fake.script = [400]
    realtime = client(fake.base_url)
    with caplog.at_level(logging.WARNING, "authserver.shim"):
        realtime.notify_async(user_ids=["a"])
        realtime.notify_async(user_ids=["b"])
        realtime.join()
    assert [call["body"]["data"] for call in fake.calls] == [[{"user_id": "a"}], [{"user_id": "b"}]]
    assert "realtime notification dropped" in caplog.text


def test_service_notify_uses_the_configured_realtime_url(fake, monkeypatch):
    monkeypatch.setenv("IFTTT_REALTIME_URL", fake.base_url)
    service = IftttService(
        authserver_url="http://127.0.0.1:9",
        server_id="rs_x",
        server_secret="s",
        service_keys=[KEY, "second-key"],
    )
    assert service.notify(trigger_identities=["t1"]) == 1
    assert fake.calls[0]["headers"]["Ifttt-Service-Key"] == KEY
    assert service.notify_async(user_ids=["u9"]) is True
    service.realtime.join()
    assert fake.calls[1]["body"] == {"data": [{"user_id": "u9"}]}
