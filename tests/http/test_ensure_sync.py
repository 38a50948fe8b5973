"""AuthServerFlask.ensure_sync: Flask's answer, remembered per code object."""

from flask import Flask
from flask import after_this_request

from authserver.app_setup import AuthServerFlask


def test_plain_functions_and_methods_are_returned_as_they_are(app):
    def hook() -> None:
        return None

    class Holder:
        def method(self) -> None:
            return None

    holder = Holder()
    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(holder.method) == holder.method


def test_a_coroutine_function_still_takes_flasks_async_path(app, monkeypatch):
    wrapped = []
    monkeypatch.setattr(AuthServerFlask, "async_to_sync", lambda self, func: wrapped.append(func))

    async def view() -> str:
        return "async"

    def plain() -> str:
        return "plain"

    app.ensure_sync(plain)
    app.ensure_sync(view)
    app.ensure_sync(view)

    assert wrapped == [view, view]


def test_a_callable_without_code_gets_flasks_own_answer(app):
    class Callable:
        def __call__(self) -> None:
            return None

    instance = Callable()
    assert app.ensure_sync(instance) is instance
    assert Flask.ensure_sync(app, instance) is instance


def test_closures_made_per_request_share_one_entry(app, http):
    @app.get("/closure-probe")
    def probe() -> str:
        @after_this_request
        def tag(response):  # a new function object on every request
            response.headers["X-Probe"] = "1"
            return response

        return "ok"

    for _ in range(3):
        assert http.get("/closure-probe").headers["X-Probe"] == "1"
    size = len(app._plain_code)
    for _ in range(20):
        http.get("/closure-probe")

    assert len(app._plain_code) == size
