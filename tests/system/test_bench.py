"""Smoke test of `make bench`: bench/run.py end to end, tiny and on SQLite only.

It proves the tooling works (seeding, the server, the reference app, the wrk
script, the report), not that the server is fast: one second per workload
measures nothing useful. It does prove that every workload gets only 2xx answers
from both servers, so a seeded token a server refuses, or a refresh token sent
twice, fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("W0", "W1", "W2", "W3", "W4")
REFERENCE_WORKLOADS = ("W0", "W1", "W2", "W3")


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """Return the cells of a table's body rows, under ``### heading``."""
    section = markdown.split(f"### {heading}", 1)[1].split("###", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0] == "sqlite":
            rows.append(cells)
    return rows


def result_rows(markdown: str, server: str = "authserver") -> dict[str, list[str]]:
    """Return one server's Results rows, keyed by workload name."""
    return {
        cells[2].split()[0]: cells
        for cells in table_rows(markdown, "Results")
        if cells[1] == server
    }


def test_bench_runs_every_workload(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        # CI installs wrk (.ci/run); a missing wrk must not pass silently as a skip.
        pytest.fail("wrk is not installed; install it with: sudo apt-get install wrk")
    output = tmp_path / "performance.md"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--db",
            "sqlite",
            "--duration",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--users",
            "20",
            "--max-rate",
            "2000",
            "--workloads",
            ",".join(WORKLOADS),
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    rows = result_rows(text)
    assert sorted(rows) == list(WORKLOADS), text
    reference = result_rows(text, "reference")
    assert sorted(reference) == list(REFERENCE_WORKLOADS), text
    for name, cells in [*rows.items(), *reference.items()]:
        rate, non2xx = float(cells[3].replace(",", "")), int(cells[6])
        assert rate > 0, f"{name}: {cells}"
        assert non2xx == 0, f"{name} got non-2xx answers: {cells}\n{result.stdout}"
    # One ratio per workload both ran, computed from the two rates shown beside it.
    ratios = {cells[1].split()[0]: cells for cells in table_rows(text, "Against the reference")}
    assert sorted(ratios) == list(REFERENCE_WORKLOADS), text
    for name, cells in ratios.items():
        mine, ref = float(cells[2].replace(",", "")), float(cells[3].replace(",", ""))
        assert (mine, ref) == (
            float(rows[name][3].replace(",", "")),
            float(reference[name][3].replace(",", "")),
        )
        assert float(cells[4]) == pytest.approx(mine / ref, abs=0.02)
    # Hand-written text outside the markers survives a second run.
    output.write_text(output.read_text().replace("(Profiles and findings go here.)", "KEEP ME"))
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--duration",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--users",
            "5",
            "--max-rate",
            "500",
            "--workloads",
            "W0",
            "--no-reference",
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    text = output.read_text()
    assert "KEEP ME" in text
    assert text.count("<!-- bench:begin -->") == 1
    assert sorted(result_rows(text)) == ["W0"]
    assert result_rows(text, "reference") == {}
    assert "The reference app was not run" in text
