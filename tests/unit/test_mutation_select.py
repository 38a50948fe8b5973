"""select_tests: which tests run for a mutant that coverage credits to no test."""

from __future__ import annotations

from tests.mutation.select_tests import body_of_signature
from tests.mutation.select_tests import lines_to_run
from tests.mutation.select_tests import node_ids
from tests.mutation.select_tests import statement_lines

SOURCE = '''def purge(
    *, retention=1
) -> int:
    """Docstring."""
    return retention


class Rules:
    def update(self, clear=False):
        return clear
'''


def test_a_default_on_a_continuation_line_runs_the_tests_of_the_body() -> None:
    assert body_of_signature(SOURCE, 2) == {4, 5}


def test_a_methods_default_on_its_def_line_runs_the_tests_of_the_body() -> None:
    assert body_of_signature(SOURCE, 9) == {10}


def test_a_body_line_is_in_no_signature() -> None:
    assert body_of_signature(SOURCE, 5) == set()
    assert body_of_signature(SOURCE, 8) == set()


CONDITION = """def lookup(cached, now):
    if (
        cached is not None
        and now < cached[1]
    ):
        return cached[2]
    raise ValueError(
        "missing"
    )
"""


def test_a_multi_line_conditions_opening_runs_the_tests_of_its_lines() -> None:
    # `if (` -> `if not (`: coverage credits the condition to line 3, not 2.
    assert statement_lines(CONDITION, 2) == {2, 3, 4, 5}


def test_a_compound_statement_brings_its_header_not_its_body() -> None:
    assert 6 not in statement_lines(CONDITION, 2)
    assert statement_lines(CONDITION, 6) == {6}


def test_a_continuation_line_brings_its_whole_statement() -> None:
    assert statement_lines(CONDITION, 8) == {7, 8, 9}


LAZY = '''LIMIT = 20


def open_session(user, *, lifetime):
    """Docstring."""
    return LIMIT + lifetime
'''
IMPORTER = "tests/unit/test_config.py::test_create_app"
LOGIN = "tests/http/test_login.py::test_login"


class Coverage:
    """Contexts as pytest-cov records them for a module first imported during a test."""

    def contexts_by_lineno(self, filename: str) -> dict[int, list[str]]:
        return {1: [f"{IMPORTER}|run"], 4: [f"{IMPORTER}|run"], 5: [], 6: [f"{LOGIN}|run"]}


def test_a_signature_imported_during_a_test_runs_the_tests_of_the_body() -> None:
    assert node_ids(Coverage(), "sessions.py", lines_to_run(LAZY, 4)) == {IMPORTER, LOGIN}


def test_a_constant_imported_during_a_test_runs_the_tests_that_use_it() -> None:
    assert node_ids(Coverage(), "sessions.py", lines_to_run(LAZY, 1)) == {IMPORTER, LOGIN}


def test_a_body_line_runs_only_its_own_tests() -> None:
    assert node_ids(Coverage(), "sessions.py", lines_to_run(LAZY, 6)) == {LOGIN}
