"""The cosmic-ray filter that skips mutants equivalent by construction (make mutate).

Positions come from `tokenize`, which counts like cosmic-ray (parso): 1-based lines,
0-based character columns.
"""

from __future__ import annotations

import io
import tokenize

from tests.mutation.filter_annotations import equivalent_spans
from tests.mutation.filter_annotations import reason_to_skip

DOCSTRING = '"""Module docstring: 3 * 4."""\n'
FUTURE = "from __future__ import annotations\n"
BODY = '''
LIMIT: int | None = 3 * 4
GREETING = "café ☕☕☕☕"; RATE: float | None = 2 * 0.5


class Box:
    """Class docstring."""

    size: int | None = 1 | 2


def f(a: int | None, *, b: dict[str, int] | None = None) -> int | None:
    """Function docstring."""
    total: int | None = a * 2 if a is not None else None
    return total | 1
'''


def operators(source: str) -> list[tuple[str, tuple[int, int], tuple[int, int], str]]:
    """Each `|` and `*` with its position and its line, as a mutation would see them."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.OP and token.string in {"|", "*"}:
            found.append((token.string, token.start, token.end, token.line.strip()))
    return found


def reasons(source: str) -> list[tuple[str, str, str | None]]:
    spans = equivalent_spans(source)
    return [
        (line, operator, reason_to_skip(spans, start, end))
        for operator, start, end, line in operators(source)
    ]


def test_operators_inside_annotations_are_skipped_and_code_is_kept() -> None:
    found = reasons(DOCSTRING + FUTURE + BODY)
    assert found == [
        ("LIMIT: int | None = 3 * 4", "|", "annotation"),
        ("LIMIT: int | None = 3 * 4", "*", None),
        ('GREETING = "café ☕☕☕☕"; RATE: float | None = 2 * 0.5', "|", "annotation"),
        ('GREETING = "café ☕☕☕☕"; RATE: float | None = 2 * 0.5', "*", None),
        ("size: int | None = 1 | 2", "|", "annotation"),
        ("size: int | None = 1 | 2", "|", None),
        (
            "def f(a: int | None, *, b: dict[str, int] | None = None) -> int | None:",
            "|",
            "annotation",
        ),
        ("def f(a: int | None, *, b: dict[str, int] | None = None) -> int | None:", "*", None),
        (
            "def f(a: int | None, *, b: dict[str, int] | None = None) -> int | None:",
            "|",
            "annotation",
        ),
        (
            "def f(a: int | None, *, b: dict[str, int] | None = None) -> int | None:",
            "|",
            "annotation",
        ),
        ("total: int | None = a * 2 if a is not None else None", "|", "annotation"),
        ("total: int | None = a * 2 if a is not None else None", "*", None),
        ("return total | 1", "|", None),
    ]


def test_without_the_future_import_annotations_are_evaluated_so_nothing_is_skipped() -> None:
    # `def f(a: int - None)` raises at import there: a real mutant.
    assert all(reason is None for _line, _operator, reason in reasons(DOCSTRING + BODY))


def test_docstrings_are_skipped_whole_and_only_them() -> None:
    source = DOCSTRING + FUTURE + BODY
    spans = equivalent_spans(source)
    lines = source.splitlines()
    for text in ("Module docstring: 3 * 4.", "Class docstring.", "Function docstring."):
        line = next(i for i, content in enumerate(lines, 1) if text in content)
        column = lines[line - 1].index(text)
        assert reason_to_skip(spans, (line, column), (line, column + 1)) == "docstring"
    greeting = next(i for i, content in enumerate(lines, 1) if "café ☕☕☕☕" in content)
    column = lines[greeting - 1].index('"café ☕☕☕☕"')
    assert reason_to_skip(spans, (greeting, column), (greeting, column + 11)) is None


def test_a_mutation_reaching_past_an_annotation_is_kept() -> None:
    source = FUTURE + "LIMIT: int | None = 3\n"  # line 2
    spans = equivalent_spans(source)
    # From inside the annotation to the value: not wholly inside, so kept.
    assert reason_to_skip(spans, (2, 11), (2, 21)) is None
    assert reason_to_skip(spans, (2, 11), (2, 12)) == "annotation"
