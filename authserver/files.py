"""Files and folders only the server's own user may read: the instance folder, SQLite."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_folder(path: Path) -> None:
    """Create ``path`` with mode 0700 unless it exists (its parents as ``mkdir -p`` does).

    An existing folder keeps its mode: the admin may have chosen it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_FOLDER_MODE)
    except FileExistsError:
        return
    # mkdir's mode passes through the umask; set it exactly.
    path.chmod(PRIVATE_FOLDER_MODE)


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
