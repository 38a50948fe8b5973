"""IFTTT's Realtime API: tell IFTTT to poll some triggers now.

``POST {base}/v1/notifications`` with ``IFTTT-Service-Key`` and ``X-Request-ID``; the
body lists up to 1,000 ``user_id`` and/or ``trigger_identity`` entries. IFTTT then
polls those triggers; nothing about the events themselves is sent.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = ["BATCH_SIZE", "RealtimeClient", "RealtimeError"]

log = logging.getLogger(__name__)

BATCH_SIZE = 1000  # IFTTT's documented maximum per notification call.


class RealtimeError(Exception):
    """IFTTT refused a notification, or stayed unreachable after the retries."""


class RealtimeClient:
    """Sends Realtime notifications, in batches, with retries; optionally in background.

    :param service_key: the IFTTT service key sent as ``IFTTT-Service-Key``.
    :param base_url: ``https://realtime.ifttt.com`` (a local fake in tests).
    :param retries: attempts after the first on a network error or a 5xx answer.
    :param backoff: seconds before the first retry; doubles with each further one.
    :param timeout: seconds for connecting and for each answer.
    :param queue_size: notifications ``notify_async`` holds before refusing more.
    """

    def __init__(
        self,
        *,
        service_key: str,
        base_url: str = "https://realtime.ifttt.com",
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        queue_size: int = 1000,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/notifications"
        self.timeout = timeout
        self._service_key = service_key
        self.session = requests.Session()
        # urllib3 owns the retry loop: exponential backoff, Retry-After honoured, and
        # POST retried too (a duplicate notification only causes one extra poll).
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=list(range(500, 600)),
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._queue: queue.Queue[list[dict[str, str]]] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

    def notify(
        self, *, user_ids: Iterable[str] = (), trigger_identities: Iterable[str] = ()
    ) -> int:
        """Send the notifications now, 1,000 per call; return the number of calls.

        :raises RealtimeError: on a 4xx answer, or a 5xx/network error after retries.
        """
        calls = 0
        for batch in _batches(_entries(user_ids, trigger_identities)):
            self._post(batch)
            calls += 1
        return calls

    def notify_async(
        self, *, user_ids: Iterable[str] = (), trigger_identities: Iterable[str] = ()
    ) -> bool:
        """Queue the notifications for a background thread; False when the queue is full.

        A full queue drops the notification (logged): IFTTT still polls on its own
        schedule, so a lost notification only delays events.
        """
        self._start_worker()
        for batch in _batches(_entries(user_ids, trigger_identities)):
            try:
                self._queue.put_nowait(batch)
            except queue.Full:
                log.warning("realtime queue full: dropped a notification of %d", len(batch))
                return False
        return True

    def join(self) -> None:
        """Wait until every queued notification was sent (or given up)."""
        self._queue.join()

    def _start_worker(self) -> None:
        # Started on first use, so a forking server starts it in each worker process.
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="ifttt-realtime", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                self._post(batch)
            except RealtimeError as error:
                log.warning("realtime notification dropped: %s", error)
            except Exception:
                log.exception("realtime notification failed")
            finally:
                self._queue.task_done()

    def _post(self, batch: list[dict[str, str]]) -> None:
        headers = {
            "IFTTT-Service-Key": self._service_key,
            "X-Request-ID": str(uuid.uuid4()),
            "Accept": "application/json",
            "Accept-Charset": "utf-8",
        }
        try:
            answer = self.session.post(
                self.url, json={"data": batch}, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as error:
            raise RealtimeError(f"IFTTT unreachable: {type(error).__name__}") from None
        if answer.status_code >= 300:
            raise RealtimeError(f"IFTTT answered {answer.status_code}")


def _entries(user_ids: Iterable[str], trigger_identities: Iterable[str]) -> list[dict[str, str]]:
    entries: list[dict[str, Any]] = [{"user_id": str(user_id)} for user_id in user_ids]
    entries += [{"trigger_identity": str(identity)} for identity in trigger_identities]
    return entries


def _batches(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    return [entries[start : start + BATCH_SIZE] for start in range(0, len(entries), BATCH_SIZE)]
