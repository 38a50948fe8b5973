import signal

import requests


def test_serve_answers_healthz_and_stops_on_sigterm(live_server):
    response = requests.get(live_server.base_url + "/healthz", timeout=5)
    assert response.json() == {"status": "ok"}
    assert live_server.stop(signal.SIGTERM) == 0
    # The port is free again: a new bind succeeds.
    import socket

    with socket.socket() as sock:
        # As any server would: TIME_WAIT from our own request must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", live_server.port))
