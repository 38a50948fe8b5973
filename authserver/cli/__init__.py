"""The `authserver` console script: Flask's CLI bound to create_app plus admin groups."""

from __future__ import annotations

import logging
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from ..errors import ConfigError


def register_commands(app: Flask) -> None:
    """Attach every admin command group to the app's CLI."""
    from .audit import audit_command
    from .clients import clients
    from .demo import demo_command
    from .resource_servers import resource_servers
    from .serve import serve_command
    from .tokens import tokens
    from .users import users
    from .verify import ifttt_check_command

    for command in (
        users,
        clients,
        resource_servers,
        tokens,
        audit_command,
        serve_command,
        demo_command,
        ifttt_check_command,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from .. import create_app

    app = create_app()
    # Admin commands print their own results; audit lines still reach the database.
    logging.getLogger("authserver").setLevel(logging.WARNING)
    return app


def main() -> None:
    """Run the CLI; configuration errors end with one line, not a traceback."""
    try:
        _create_app()
    except ConfigError as error:
        click.echo(f"Error: {error.message}", err=True)
        sys.exit(2)
    cli = FlaskGroup(
        name="authserver",
        create_app=_create_app,
        add_default_commands=True,
        load_dotenv=False,
        set_debug_flag=False,
        help="Administer the authserver OAuth 2.0 authorization server.",
    )
    cli.main(prog_name="authserver")
