"""Skip the cosmic-ray mutants that are equivalent by construction.

Run between `cosmic-ray init` and `cosmic-ray exec`, like cosmic-ray's own
`cr-filter-pragma`: every work item whose mutation lies inside

- a type annotation (argument, return, or annotated assignment) of a module with
  `from __future__ import annotations`, where annotations are kept as strings and
  never evaluated (the smoke run's 12 `X | None` -> `X - None` survivors), or
- a docstring (cosmic-ray does not mutate strings today; kept for its operators
  to come, and because a docstring is never compared by anything)

is marked SKIPPED, with the reason in the result's output, so that `cr-report`
counts it out of the score and nothing runs it.

So is a mutant Python cannot compile (a "stillborn" one): cosmic-ray swaps the
bare `*` of keyword-only parameters and the `**` of dict unpacking like
arithmetic operators (`def f(a, +, b)`). Run, it would fail every test at import
and count as killed, flattering the score; it tests nothing.

Without the future import an annotation is evaluated when its function is
defined, and `int - None` raises at import: those mutants are real and are kept.
Neither is the first argument of `typing.cast` an annotation (it is evaluated).

    python -m tests.mutation.filter_annotations .mutation/session.sqlite
"""

from __future__ import annotations

import argparse
import ast
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cosmic-ray is the `mutation` extra: imported where used, so the
    # span logic below is unit-tested with the test install alone.
    from cosmic_ray.work_db import WorkDB
    from cosmic_ray.work_item import MutationSpec

# (first line, first column, last line, end column): 1-based lines and 0-based
# character columns, the convention of cosmic-ray's (parso's) positions.
Span = tuple[int, int, int, int]


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def _span(node: ast.AST, lines: list[str]) -> Span:
    """The node's extent with ast's UTF-8 byte columns turned into character columns."""

    def column(line: int, byte_offset: int) -> int:
        return len(lines[line - 1].encode()[:byte_offset].decode(errors="ignore"))

    end_line = node.end_lineno or node.lineno  # type: ignore[attr-defined]
    return (
        node.lineno,  # type: ignore[attr-defined]
        column(node.lineno, node.col_offset),  # type: ignore[attr-defined]
        end_line,
        column(end_line, node.end_col_offset or 0),  # type: ignore[attr-defined]
    )


def equivalent_spans(source: str) -> dict[str, list[Span]]:
    """The spans of the source where a mutation cannot change behaviour, by reason."""
    tree = ast.parse(source)
    lines = source.splitlines()
    spans: dict[str, list[Span]] = {"annotation": [], "docstring": []}
    annotations_are_strings = _has_future_annotations(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                spans["docstring"].append(_span(body[0], lines))
        if not annotations_are_strings:
            continue
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        spans["annotation"].extend(_span(a, lines) for a in annotations if a is not None)
    return spans


def _inside(start: tuple[int, int], end: tuple[int, int], span: Span) -> bool:
    first_line, first_col, last_line, last_col = span
    return (first_line, first_col) <= tuple(start) and tuple(end) <= (last_line, last_col)


def reason_to_skip(
    spans: dict[str, list[Span]], start: tuple[int, int], end: tuple[int, int]
) -> str | None:
    """The reason a mutation at start..end is equivalent, or None if it is not known to be."""
    for reason, found in spans.items():
        if any(_inside(start, end, span) for span in found):
            return reason
    return None


def _text(source: str, mutation: MutationSpec) -> str:
    """The source text a single-line mutation replaces."""
    (first_line, first_col), (last_line, last_col) = mutation.start_pos, mutation.end_pos
    if first_line != last_line:
        return ""
    return source.splitlines()[first_line - 1][first_col:last_col]


def compiles(source: str, mutation: MutationSpec) -> bool:
    """Whether the source with this mutation applied is valid Python."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**mutation.operator_args)
    mutated = mutate_code(source, operator, mutation.occurrence)
    if mutated is None:
        return True  # nothing to apply: cosmic-ray reports it as no-test itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            compile(mutated, "<mutant>", "exec", dont_inherit=True)
    except SyntaxError:
        return False
    return True


def filter_session(work_db: WorkDB, root: Path) -> Counter[str]:
    """Mark the pending equivalent and stillborn mutants SKIPPED; return how many, by reason."""
    from cosmic_ray.work_item import WorkerOutcome
    from cosmic_ray.work_item import WorkResult

    cache: dict[Path, dict[str, list[Span]]] = {}
    sources: dict[Path, str] = {}
    skipped: Counter[str] = Counter()
    done = {job_id for job_id, _ in work_db.results}
    for item in work_db.work_items:
        if item.job_id in done:
            continue
        reasons = set()
        for mutation in item.mutations:
            path = mutation.module_path
            if not path.is_absolute():
                path = root / path
            if path not in cache:
                sources[path] = path.read_text()
                cache[path] = equivalent_spans(sources[path])
            reason = reason_to_skip(cache[path], mutation.start_pos, mutation.end_pos)
            if (
                reason is None
                and _text(sources[path], mutation) in {"*", "**"}
                and not compiles(sources[path], mutation)
            ):
                reason = "syntax error"
            reasons.add(reason)
        # A higher-order item is equivalent only if every one of its mutations is.
        if None in reasons or not reasons:
            continue
        reason = "/".join(sorted(r for r in reasons if r))
        work_db.set_result(
            item.job_id,
            WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=f"equivalent: {reason}"),
        )
        skipped[reason] += 1
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("session", help="cosmic-ray session (sqlite) to filter in place")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="where module paths start")
    args = parser.parse_args(argv)
    from cosmic_ray.work_db import WorkDB
    from cosmic_ray.work_db import use_db

    with use_db(args.session, WorkDB.Mode.open) as work_db:
        total = work_db.num_work_items
        skipped = filter_session(work_db, args.root)
    counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "none"
    print(f"filter_annotations: {sum(skipped.values())} of {total} mutants skipped ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
