"""A throwaway PostgreSQL cluster for tests that stop and restart the database.

The cluster lives in a temporary folder (data directory, unix socket, log), listens on
a free loopback port with trust authentication, and is always stopped and removed by
the ``throwaway_cluster`` context manager. PostgreSQL refuses to run as root, so when
the tests run as root every ``initdb``/``pg_ctl`` call goes through ``runuser`` as the
``postgres`` OS user, which owns the folder.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.system.conftest import free_port

POSTGRES_ROOT = Path("/usr/lib/postgresql")
DATABASE = "authserver"


def find_bindir() -> Path | None:
    """Return the bin folder of the newest installed PostgreSQL, or None."""
    versions = []
    if POSTGRES_ROOT.is_dir():
        for entry in POSTGRES_ROOT.iterdir():
            if re.fullmatch(r"\d+(\.\d+)?", entry.name) and (entry / "bin" / "initdb").exists():
                versions.append((float(entry.name), entry / "bin"))
    return max(versions)[1] if versions else None


def _run_as() -> list[str]:
    """Return the prefix that runs a command as an OS user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PgCluster:
    """One throwaway cluster: where it lives and how to start and stop it."""

    bindir: Path
    root: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socketdir(self) -> Path:
        return self.root / "socket"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _pg(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*_run_as(), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n--- postgres log ---\n{self.log()}"
            )
        return result

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-10000:]
        except OSError:
            return ""

    def init(self) -> None:
        """Create the data directory (trust auth, superuser ``postgres``)."""
        self._pg(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        """Start the server on ``port`` and wait until it accepts connections."""
        # fsync off: these clusters only ever lose their processes, never the OS page
        # cache, so committed data still survives an immediate stop.
        options = (
            f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=60 "
            "-c shared_buffers=16MB"
        )
        self._pg(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate`` = every backend dies at once, like a crash)."""
        self._pg(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "stop",
        )

    def processes(self) -> list[int]:
        """Return the postmaster's pid, then the pids of its children (the backends)."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every server process: the kernel still accepts and ACKs, nobody answers.

        This is what a hung host or a network partition looks like to a client: TCP
        connections stay up and queries simply never get an answer.
        """
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT every server process (children first, then the postmaster)."""
        for pid in reversed(self.processes()):
            os.kill(pid, signal.SIGCONT)

    def is_running(self) -> bool:
        result = subprocess.run(
            [*_run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    def create_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')


@contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """Initialise and start a cluster; always stop and remove it afterwards."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"no PostgreSQL installation under {POSTGRES_ROOT}")
    # Not pytest's tmp_path: its parents are private to root, and postgres must reach
    # the data directory.
    root = Path(tempfile.mkdtemp(prefix="authserver-pg-"))
    (root / "socket").mkdir()
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in (root, root / "socket"):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    cluster = PgCluster(bindir, root, free_port())
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        if cluster.datadir.exists() and cluster.is_running():
            cluster.thaw()  # a frozen server would never stop
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
