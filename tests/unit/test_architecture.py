"""Imports point down only (docs/architecture.md), checked on the source with ast.

Layers, top to bottom: edges (blueprints, cli, oauth2, shim, app set-up) → services →
models → the base (database, clock, errors, security, signals). A module may import
its own layer and any layer below it. Below the edges, nothing reads the request:
services and models get what the request presented as arguments, and return what
the edge needs to log.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "authserver"

# What each lower layer may import from the project (package-relative module names).
BASE = {"authserver.clock", "authserver.database", "authserver.errors", "authserver.security"}
ALLOWED = {
    "models": BASE | {"authserver.models"},
    "services": BASE
    | {"authserver.models", "authserver.services", "authserver.signals", "authserver.config"},
}
# Flask names that carry the current request; below the edges they must not be read.
REQUEST_STATE = {"g", "request", "session"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, str | None, int]]:
    """Return (module, imported name or None, line) for every import in the file."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return found


def project_module(module: str, name: str | None) -> str:
    """Name the project module an import reaches (``from . import x`` reaches x)."""
    if name is not None and module in {"authserver", "authserver.services"}:
        return f"{module}.{name}"
    return module


def files_of(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_only_downward(layer):
    allowed = ALLOWED[layer]
    wrong = []
    for path in files_of(layer):
        for module, name, line in imports_of(path):
            if not module.startswith("authserver"):
                continue
            target = project_module(module, name)
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert wrong == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_do_not_read_the_request(layer):
    wrong = []
    for path in files_of(layer):
        for module, name, line in imports_of(path):
            if (module == "flask" and name in REQUEST_STATE) or module.startswith(
                ("flask_login", "flask_wtf")
            ):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}.{name}")
        # `import flask` then flask.request would dodge the check above.
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "flask"
                and node.attr in REQUEST_STATE
            ):
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads flask.{node.attr}")
    assert wrong == []


@pytest.mark.parametrize(
    "module", ["database", "extensions", "clock", "errors", "security", "signals"]
)
def test_base_modules_import_nothing_of_the_project(module):
    path = PACKAGE / f"{module}.py"
    assert [m for m, _, _ in imports_of(path) if m.startswith("authserver")] == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rules above must be able to fail: a service importing a blueprint is caught."""
    services = tmp_path / "authserver" / "services"
    services.mkdir(parents=True)
    (services / "bad.py").write_text(
        "from flask import request\nfrom ..blueprints import oauth\nfrom . import tokens\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "authserver")
    found = [
        project_module(m, n) for m, n, _ in imports_of(tmp_path / "authserver/services/bad.py")
    ]
    assert found == ["flask", "authserver.blueprints", "authserver.services.tokens"]
    with pytest.raises(AssertionError):
        test_lower_layers_import_only_downward("services")
    with pytest.raises(AssertionError):
        test_lower_layers_do_not_read_the_request("services")
