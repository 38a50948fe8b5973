"""select_tests: which tests run for a mutant that coverage credits to no test."""

from __future__ import annotations

from tests.mutation.select_tests import body_of_signature

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
