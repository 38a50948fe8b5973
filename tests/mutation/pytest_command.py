"""The pytest command that runs one mutant's tests, shared by sample.py and select_tests.py."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def pytest_command(tests: Iterable[str]) -> list[str]:
    """Return the argv that runs ``tests`` until the first failure kills the mutant.

    A fixed order (no pytest-randomly) makes a survivor reproducible, and no cache is
    written into the tree that is being mutated.
    """
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        *tests,
    ]
