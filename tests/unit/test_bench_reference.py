"""The bench's reference app starts on a database that is already in WAL mode.

Its gunicorn workers each switch their connection to WAL on connect. On a file
still in rollback-journal mode, two workers switching at once can fail with
"database is locked" (SQLite returns SQLITE_BUSY there without waiting), which
answered one W1 request with a 500 in a CI run. Seeding must leave the file in
WAL so the workers' switch is a no-op.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from bench.loadgen import Credentials
from bench.run import seed_reference


def test_seeded_reference_database_is_already_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "reference.db"
    args = argparse.Namespace(users=3, workloads=["W1", "W3"], rounds=1, max_rate=2, duration=1)
    credentials = Credentials("client", "client-secret", "rs", "rs-secret", "https://x/cb")

    target, env = seed_reference(
        f"sqlite:///{path}", tmp_path, args, credentials, "http://127.0.0.1:1"
    )

    with sqlite3.connect(path) as conn:
        # A fresh connection reads the mode persisted in the file's header.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM ref_users").fetchone()[0] == 3
    assert env["REFERENCE_DATABASE_URL"] == f"sqlite:///{path}"
    assert target.workloads == ["W1", "W3"]
