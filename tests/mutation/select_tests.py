"""cosmic-ray's test command: run only the tests that execute the mutated line.

`make mutate` first records which test executed which line (pytest-cov's per-test
contexts, in .mutation/coverage) and keeps a pristine copy of the mutated packages
(.mutation/pristine). cosmic-ray then applies one mutant on disk and runs this
script, which finds the changed line by comparing with the pristine copy and runs
those tests with -x. A line that runs only at import (the module-level Core
statements of services/refresh.py, for instance) is credited to no test, so for it
the tests that execute any line using the names the statement defines are chosen;
for a parameter's default, the tests that execute the function's body (also when
the import happened during a test, which coverage then credits with the line).
Exit status is pytest's: 0 means the mutant survived.
"""

from __future__ import annotations

import ast
import difflib
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.mutation.pytest_command import pytest_command

if TYPE_CHECKING:
    from coverage import CoverageData

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".mutation"
PACKAGES = ("authserver/services", "authserver/oauth2")


def mutated_line() -> tuple[str, int] | None:
    """Return (path, 1-based line) of the first difference from the pristine copy."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            pristine = STATE / "pristine" / relative
            if not pristine.exists():
                continue
            now, before = path.read_text().splitlines(), pristine.read_text().splitlines()
            if now == before:
                continue
            matcher = difflib.SequenceMatcher(a=before, b=now, autojunk=False)
            for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
                if tag == "equal":
                    continue
                # cosmic-ray's rewrite may also drop blank lines next to the change
                # (a removed decorator): the mutated line is the first one with code.
                for index in range(i1, max(i2, i1 + 1)):
                    if index < len(before) and before[index].strip():
                        return relative, index + 1
    return None


def node_ids(data: CoverageData, filename: str, lines: set[int]) -> set[str]:
    """Test node ids (pytest-cov contexts "nodeid|phase") that executed any of lines."""
    found: set[str] = set()
    by_line = data.contexts_by_lineno(filename)
    for line in lines:
        for context in by_line.get(line, ()):
            if context:
                found.add(context.rsplit("|", 1)[0])
    return found


def statement_lines(source: str, line: int) -> set[int]:
    """The line and the lines of the innermost statement that holds it.

    Coverage credits a statement spread over several lines to one of its lines only:
    the first for a simple statement, but for a compound statement's header (an
    ``if (`` whose condition starts on the next line) the line where its expression
    starts. A mutant elsewhere in the statement (`status_code=401` inside a multi-line
    `raise`; `if (` → `if not (`) would otherwise seem executed by no test and survive
    untested. Of a compound statement only the header counts, not its body.
    """
    innermost: ast.AST | None = None
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.stmt | ast.ExceptHandler)
            and node.lineno <= line <= (node.end_lineno or node.lineno)
            and (innermost is None or node.lineno >= innermost.lineno)  # type: ignore[attr-defined]
        ):
            innermost = node
    if innermost is None:
        return {line}
    first: int = innermost.lineno  # type: ignore[attr-defined]
    last: int = innermost.end_lineno or first  # type: ignore[attr-defined]
    body = getattr(innermost, "body", None)
    if isinstance(body, list) and body and body[0].lineno > first:
        last = body[0].lineno - 1
    return {line} | set(range(first, last + 1))


def body_of_signature(source: str, line: int) -> set[int]:
    """The body lines of the innermost function whose signature holds the line.

    A parameter's default runs once, when the def runs (at import for a module-level
    function), so coverage credits it to no test; the tests that run the body are the
    ones that can tell a changed default apart. Empty when the line is in no signature.
    """
    found: set[int] = set()
    innermost = 0
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.lineno <= line < node.body[0].lineno
            and node.lineno >= innermost
        ):
            innermost = node.lineno
            found = set(range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1))
    return found


def users_of_statement(source: str, line: int) -> set[int] | None:
    """Lines inside functions that use the names a module-level statement defines.

    None when the line is inside a function (coverage credits it to tests directly).
    """
    tree = ast.parse(source)
    for node in tree.body:
        # A decorator runs at import, before its def's own line (node.lineno).
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if not first <= line <= (node.end_lineno or node.lineno):
            continue
        decorator = line < node.lineno
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not decorator:
            return None
        names: set[str] = set()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = {node.name}
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ClassDef):
            if any(
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and item.lineno <= line <= (item.end_lineno or item.lineno)
                for item in node.body
            ):
                return None
            names = {node.name}
        lines: set[int] = set()
        # Follow one level of indirection: a statement used only by another
        # module-level statement (e.g. a column collection) reaches its users too.
        pending, seen = set(names), set()
        while pending:
            name = pending.pop()
            seen.add(name)
            for other in ast.walk(tree):
                if isinstance(other, ast.Name) and other.id == name and other.lineno != line:
                    lines.add(other.lineno)
            for top in tree.body:
                if isinstance(top, ast.Assign) and any(
                    isinstance(n, ast.Name) and n.id == name for n in ast.walk(top.value)
                ):
                    pending |= {t.id for t in top.targets if isinstance(t, ast.Name)} - seen
        return lines
    return set()


def lines_to_run(source: str, line: int) -> set[int]:
    """The lines whose tests can tell a mutant of ``line`` apart.

    Its statement's lines; and for a line that runs at import (a signature, a
    module-level statement or decorator), the function's body or the lines that use
    the names it defines. Always, not only when no test executed the line itself: a
    module first imported during a test (services/sessions.py, imported by
    create_app's blueprints) has its import-time lines credited to that one test,
    which cannot tell the mutant apart.
    """
    lines = statement_lines(source, line) | body_of_signature(source, line)
    return lines | (users_of_statement(source, line) or set())


def main() -> int:
    where = mutated_line()
    if where is None:
        print("select_tests: no mutated line found", file=sys.stderr)
        return 2
    relative, line = where
    # Imported here: coverage comes with the mutation extra, and the test install
    # (tests/unit/test_mutation_select.py) imports this module without it.
    from coverage import CoverageData

    data = CoverageData(basename=str(STATE / "coverage"))
    data.read()
    # The map may come from another checkout of the same commit (a copy that runs
    # the mutants while the original stays editable): match by relative path.
    filename = next(
        (f for f in data.measured_files() if Path(f).as_posix().endswith("/" + relative)),
        str(ROOT / relative),
    )
    source = (STATE / "pristine" / relative).read_text()
    tests = node_ids(data, filename, lines_to_run(source, line))
    if not tests:
        # Credited to no test: a module-level line whose names no test's code uses
        # (e.g. a type alias). It still runs at import, which is all that can tell
        # it apart: a mutant that breaks the import is killed; else it survives.
        module = relative.removesuffix(".py").replace("/", ".")
        imported = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=False)
        print(f"select_tests: no test executes {relative}:{line}; import of {module} checked")
        return imported.returncode
    command = pytest_command(sorted(tests))
    return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
