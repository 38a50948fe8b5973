"""The README's CLI and endpoint tables list exactly the commands, options and routes.

When one of these fails after adding a command, option or route, the message names
what to add to (or remove from) which README table.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from authserver.cli import build_cli

README = Path(__file__).resolve().parent.parent / "README.md"
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def table_rows(heading: str) -> list[str]:
    """Return the first cells of the table under a README heading."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    cells = []
    for line in match.group(1).splitlines():
        if line.startswith("|") and not line.startswith(
            ("|---", "| command", "| endpoint", "| variable")
        ):
            # Split on unescaped pipes: "\|" inside a cell is text.
            cells.append(re.split(r"(?<!\\)\|", line)[1].strip())
    return cells


def command_tree() -> dict[str, set[str]]:
    """Map each command path ("" = authserver itself) to its long option names."""
    tree: dict[str, set[str]] = {}

    def walk(command: click.Command, path: list[str]) -> None:
        options = {
            max(names, key=len)
            for param in command.params
            if isinstance(param, click.Option) and "--help" not in param.opts
            # A --flag/--no-flag pair is documented as both spellings.
            for names in (param.opts, param.secondary_opts)
            if names
        }
        if options or not isinstance(command, click.Group):
            tree[" ".join(path)] = options
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(build_cli(), [])
    return tree


def documented_commands() -> dict[str, set[str]]:
    """Map each command path in the README's CLI table to the options listed with it."""
    documented: dict[str, set[str]] = {}
    for cell in table_rows("CLI reference"):
        spans = re.findall(r"`([^`]*)`", cell)
        paths: list[str] = []
        for span in spans:
            words = span.replace("\\|", "|").split()
            if words and words[0] == "authserver":
                words = words[1:]
            elif not paths:
                # Not a command (an example value); a sibling after "/" has no prefix.
                continue
            path = []
            for word in words:
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                path.append(word)
            name = " ".join(path)
            options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span))
            documented.setdefault(name, set()).update(options)
            paths.append(name)
    return documented


def test_every_command_and_option_is_in_the_readme():
    tree, documented = command_tree(), documented_commands()
    problems = []
    for path, options in sorted(tree.items()):
        label = f"authserver {path}".strip()
        if path not in documented:
            problems.append(f"README 'CLI reference' lacks a row for `{label}`")
            continue
        for option in sorted(options - documented[path]):
            problems.append(f"README 'CLI reference' row `{label}` lacks option {option}")
    assert problems == [], "\n".join(problems)


def test_readme_lists_no_command_or_option_that_does_not_exist():
    tree, documented = command_tree(), documented_commands()
    problems = []
    for path, options in sorted(documented.items()):
        label = f"authserver {path}".strip()
        if path not in tree:
            problems.append(f"README 'CLI reference' lists `{label}`, which is not a command")
            continue
        for option in sorted(options - tree[path]):
            problems.append(f"README 'CLI reference' row `{label}` lists {option}, which it lacks")
    assert problems == [], "\n".join(problems)


def routes(app) -> dict[tuple[str, str], str]:
    found = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule.rule)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            found[(method, path)] = rule.endpoint
    return found


def documented_routes() -> set[tuple[str, str]]:
    documented: set[tuple[str, str]] = set()
    for cell in table_rows("Endpoints"):
        for span in re.findall(r"`([^`]*)`", cell):
            methods, _, path = span.partition(" ")
            if not re.fullmatch(r"[A-Z]+(/[A-Z]+)*", methods) or not path.startswith("/"):
                continue
            documented.update((method, path) for method in methods.split("/"))
    return documented


def test_every_route_is_in_the_readme(app):
    missing = sorted(set(routes(app)) - documented_routes())
    messages = [
        f"README 'Endpoints' lacks `{method} {path}` (view {routes(app)[(method, path)]})"
        for method, path in missing
    ]
    assert messages == [], "\n".join(messages)


def test_readme_lists_no_route_that_does_not_exist(app):
    stale = sorted(documented_routes() - set(routes(app)))
    messages = [
        f"README 'Endpoints' lists `{method} {path}`, which no route serves"
        for method, path in stale
    ]
    assert messages == [], "\n".join(messages)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "`authserver users list [--json]` / `users show USERNAME [--json]`",
            {"users list", "users show"},
        ),
        ("`authserver tokens revoke (--user U \\| --client C \\| --token T)`", {"tokens revoke"}),
    ],
)
def test_the_parser_reads_sibling_commands_in_one_row(monkeypatch, row, expected):
    monkeypatch.setattr(
        "tests.test_readme.table_rows", lambda heading: [row] if heading == "CLI reference" else []
    )
    assert set(documented_commands()) == expected


def test_configuration_table_lists_every_setting():
    from authserver.config import DEFAULTS

    rows = set()
    for cell in table_rows("Configuration"):
        rows.update(re.findall(r"`AUTHSERVER_([A-Z0-9_]+)`", cell))
    missing = sorted(set(DEFAULTS) - rows)
    stale = sorted(rows - set(DEFAULTS) - {"INSTANCE_PATH"})
    assert missing == [], f"README 'Configuration' lacks AUTHSERVER_{missing}"
    assert stale == [], f"README 'Configuration' lists unknown settings AUTHSERVER_{stale}"
