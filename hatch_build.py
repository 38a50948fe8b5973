"""Hatch build hook: compile the message catalogs (.po -> .mo) into the wheel.

The .mo files are build products (not in git). A wheel gets them under
authserver/translations/; an editable install compiles them in place, beside the
.po files, where a source checkout reads them (as `make translations` does).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def compile_catalog(source: Path, target: Path) -> None:
    """Compile one .po file into a .mo file (fuzzy entries are left out)."""
    with source.open("rb") as handle:
        catalog = read_po(handle)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        write_mo(handle, catalog)


class CompileCatalogs(BuildHookInterface):  # type: ignore[type-arg]
    """Compile translations/*/LC_MESSAGES/messages.po for the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile every catalog and add the results to the build."""
        sources = sorted(Path(self.root, "translations").glob("*/LC_MESSAGES/messages.po"))
        if version == "editable":
            for source in sources:
                compile_catalog(source, source.with_suffix(".mo"))
            return
        out = Path(tempfile.mkdtemp(prefix="authserver-catalogs-"))
        for source in sources:
            relative = source.relative_to(self.root).with_suffix(".mo")
            target = out / relative
            compile_catalog(source, target)
            build_data["force_include"][str(target)] = f"authserver/{relative.as_posix()}"
