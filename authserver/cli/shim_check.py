"""`authserver shim-check`: IFTTT's endpoint tests against a running shim."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import click

from ..shim.check import ShimChecker
from ..shim.check import run_shim_checks


@click.command("shim-check")
@click.option("--shim-url", required=True, help="The shim's base URL (before /ifttt/v1).")
@click.option(
    "--service-key-stdin",
    is_flag=True,
    help="Read the IFTTT service key from stdin (else $IFTTT_SERVICE_KEY, its first key).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
def shim_check_command(shim_url: str, service_key_stdin: bool, timeout: float) -> None:
    """Run IFTTT's endpoint tests against a running shim, one line per check.

    Exits 1 when any check fails. The shim's test/setup mints a test token (one
    more access token in the test user's grant).
    """
    parts = urlsplit(shim_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise click.BadParameter("must be an http(s) URL", param_hint="--shim-url")
    if service_key_stdin:
        key = sys.stdin.readline().strip()
    else:
        # Several keys may be configured comma-separated, as the example shim reads them.
        key = os.environ.get("IFTTT_SERVICE_KEY", "").split(",")[0].strip()
    if not key:
        raise click.ClickException(
            "no service key: pipe it to --service-key-stdin (or set IFTTT_SERVICE_KEY)"
        )
    checker = ShimChecker(shim_url=shim_url, service_key=key, timeout=timeout)
    results = run_shim_checks(checker, click.echo)
    failed = sum(not result.passed for result in results)
    if failed:
        click.echo(f"{failed} of {len(results)} checks failed.")
        raise SystemExit(1)
    click.echo(f"All {len(results)} checks passed.")
