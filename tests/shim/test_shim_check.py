"""`authserver shim-check`: passes a correct shim, and each broken shim fails its check."""

import pytest
from flask import Flask
from flask import jsonify
from flask import request

from authserver.shim.check import ShimChecker
from authserver.shim.check import run_shim_checks

KEY = "service-key-" + "c" * 30
TOKEN = "good-token"
SAMPLES = {
    "triggers": {"new_thing": {"topic": "news"}},
    "triggerFieldValidations": {"new_thing": {"topic": {"valid": "news", "invalid": "x"}}},
    "actions": {"create_thing": {"title": "Hi"}},
    "actionRecordSkipping": {"create_thing": {"title": ""}},
    "queries": {"list_things": {}},
}


def fake_shim(*breaks):
    """A shim written by hand (no kit), correct unless told which way to break."""
    app = Flask("fake_shim")

    def key_ok():
        return "no key check" in breaks or request.headers.get("IFTTT-Service-Key") == KEY

    def error(status, message="no"):
        return jsonify(errors=[{"message": message}]), status

    @app.before_request
    def bearer():
        if request.path.startswith(("/ifttt/v1/status", "/ifttt/v1/test/setup")):
            return None
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            if "403 for bad token" in breaks and "Authorization" in request.headers:
                return error(403)
            return error(401)
        return None

    @app.get("/ifttt/v1/status")
    def status():
        return ("", 200) if key_ok() else error(401)

    @app.post("/ifttt/v1/test/setup")
    def setup():
        if not key_ok():
            return error(401)
        return jsonify(data={"accessToken": TOKEN, "samples": SAMPLES})

    @app.post("/ifttt/v1/triggers/new_thing")
    def trigger():
        body = request.get_json()
        count = 2 if "2 items" in breaks else 5
        items = [
            {"meta": {"id": str(n), "timestamp": 1_900_000_000 - n * 60}} for n in range(count)
        ]
        if "missing meta.id" in breaks:
            del items[1]["meta"]["id"]
        if "wrong ordering" in breaks:
            items.reverse()
        return jsonify(data=items[: body.get("limit", 50)])

    @app.post("/ifttt/v1/triggers/new_thing/fields/topic/validate")
    def validate():
        value = request.get_json()["value"]
        return jsonify(
            data={"valid": True} if value == "news" else {"valid": False, "message": "no"}
        )

    @app.post("/ifttt/v1/triggers/new_thing/fields/topic/options")
    def options():
        return jsonify(data=[{"label": "News", "value": "news"}])

    @app.post("/ifttt/v1/actions/create_thing")
    def action():
        if not request.get_json()["actionFields"]["title"]:
            return jsonify(errors=[{"status": "SKIP", "message": "empty"}]), 400
        return jsonify(data=[{"id": "1"}])

    @app.post("/ifttt/v1/queries/list_things")
    def query():
        return jsonify(data=[{"id": "1"}])

    return app


def check(serve, *breaks):
    url = serve(fake_shim(*breaks)).base_url
    lines: list[str] = []
    results = run_shim_checks(ShimChecker(shim_url=url, service_key=KEY, timeout=5), lines.append)
    assert [result.line() for result in results] == lines
    return {result.title: result for result in results}


def test_a_correct_shim_passes_every_check(serve):
    results = check(serve)
    assert all(result.passed for result in results.values()), results
    assert set(results) == {
        "status",
        "status with an invalid key",
        "test/setup with an invalid key",
        "test/setup",
        "test/setup accessToken works",
        "trigger new_thing",
        "trigger new_thing limit",
        "trigger new_thing without a valid token",
        "action create_thing without a valid token",
        "query list_things without a valid token",
        "action create_thing",
        "action create_thing skipping",
        "query list_things",
        "trigger new_thing field topic validation",
        "trigger new_thing field topic options",
        "action create_thing field title options",
    }


@pytest.mark.parametrize(
    ("broken", "failing", "reason"),
    [
        ("no key check", "status with an invalid key", "expected 401, got 200"),
        ("2 items", "trigger new_thing", "2 items, IFTTT expects at least 3"),
        ("missing meta.id", "trigger new_thing", "item #2 has no meta.id"),
        ("403 for bad token", "trigger new_thing without a valid token", "expected 401, got 403"),
        ("wrong ordering", "trigger new_thing", "not ordered newest first"),
    ],
)
def test_a_broken_shim_fails_the_matching_check(serve, broken, failing, reason):
    results = check(serve, broken)
    assert not results[failing].passed
    assert reason in results[failing].detail
    assert results["status"].passed


def test_shim_check_command_prints_one_line_per_check_and_exits_1(cli, serve):
    url = serve(fake_shim("wrong ordering")).base_url
    result = cli.invoke(args=["shim-check", "--shim-url", url, "--service-key-stdin"], input=KEY)
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert "FAIL  trigger new_thing: items are not ordered newest first (meta.timestamp)" in lines
    assert lines[-1] == "1 of 16 checks failed."


def test_shim_check_command_passes_a_correct_shim(cli, serve):
    url = serve(fake_shim()).base_url
    result = cli.invoke(args=["shim-check", "--shim-url", url, "--service-key-stdin"], input=KEY)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "All 16 checks passed."


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["--shim-url", "ftp://x", "--service-key-stdin"], KEY, "http(s) URL"),
        (["--shim-url", "http://127.0.0.1:9", "--service-key-stdin"], "", "no service key"),
    ],
)
def test_shim_check_command_bad_input_is_one_line(cli, monkeypatch, args, stdin, fragment):
    monkeypatch.delenv("IFTTT_SERVICE_KEY", raising=False)
    result = cli.invoke(args=["shim-check", *args], input=stdin)
    assert result.exit_code != 0
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_shim_check_unreachable_shim_fails_cleanly(cli):
    result = cli.invoke(
        args=["shim-check", "--shim-url", "http://127.0.0.1:9", "--service-key-stdin"], input=KEY
    )
    assert result.exit_code == 1
    assert "FAIL  status: no answer (ConnectionError)" in result.stdout
