"""/metrics through a real two-worker server: the multiprocess collector sees every worker."""

import json
import threading
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "mp-metrics-" + "5" * 24
BATCH = 8
MAX_REQUESTS = 400


def scrape(server):
    response = requests.get(
        server.base_url + "/metrics",
        timeout=10,
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
    )
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def healthz_count(samples):
    key = (
        "authserver_http_requests_total",
        (("endpoint", "health.healthz"), ("method", "GET"), ("status", "200")),
    )
    return samples.get(key, 0.0)


def healthz_observations(samples):
    key = (
        "authserver_http_request_duration_seconds_count",
        (("endpoint", "health.healthz"), ("status", "200")),
    )
    return samples.get(key, 0.0)


def request_lines(server, prefix):
    """The server's JSON request-log lines whose request id starts with prefix."""
    lines = []
    for raw in server.log().splitlines():
        if not raw.startswith("{"):
            continue
        entry = json.loads(raw)
        if entry.get("logger") == "authserver.request" and str(
            entry.get("request_id", "")
        ).startswith(prefix):
            lines.append(entry)
    return lines


def send_batch(server, start):
    """BATCH concurrent /healthz calls (concurrency makes the second worker accept)."""
    statuses = []

    def one(index):
        response = requests.get(
            server.base_url + "/healthz",
            timeout=10,
            headers={"X-Request-ID": f"mp-{start + index}"},
        )
        statuses.append((response.status_code, response.headers["X-Request-ID"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BATCH)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_metrics_count_requests_served_by_every_worker(server_factory):
    server = server_factory(workers=2, METRICS_TOKEN=METRICS_TOKEN)
    assert requests.get(server.base_url + "/metrics", timeout=10).status_code == 404
    first = scrape(server)
    before, observed_before = healthz_count(first), healthz_observations(first)

    sent = 0
    pids = set()
    # Keep sending until both workers have answered (bounded), reading the worker pid
    # from the JSON request log.
    while sent < MAX_REQUESTS:
        statuses = send_batch(server, sent)
        assert statuses == [(200, rid) for _s, rid in statuses]
        sent += BATCH
        time.sleep(0.2)  # let the log file catch up
        pids = {line["pid"] for line in request_lines(server, "mp-")}
        if len(pids) >= 2:
            break
    assert len(pids) == 2, f"only one worker answered {sent} requests"

    last = scrape(server)
    assert healthz_count(last) - before == sent
    # The latency histogram is merged across workers too.
    assert healthz_observations(last) - observed_before == sent
    # Every request logged exactly one JSON line with its echoed id.
    assert sorted(line["request_id"] for line in request_lines(server, "mp-")) == sorted(
        f"mp-{i}" for i in range(sent)
    )
