"""The `authserver` console script: our admin commands, bound to create_app."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError
from .output import describe_database_error


class ConfigErrorExit(click.ClickException):
    """An invalid setting: one line on stderr, exit status 2 (nothing was attempted)."""

    exit_code = 2


def register_commands(app: Flask) -> None:
    """Attach every admin command group to the app's CLI (``app.cli``)."""
    for name, command in admin_commands().items():
        app.cli.add_command(command, name)


def admin_commands() -> dict[str, click.Command]:
    """Return the admin commands by name (importing them lazily keeps workers lean)."""
    from .audit import audit_command
    from .clients import clients
    from .database import db_group
    from .demo import demo_command
    from .platform_checks import check_command
    from .resource_servers import resource_servers
    from .serve import serve_command
    from .shim_check import shim_check_command
    from .tokens import tokens
    from .users import users
    from .verify import ifttt_check_command

    commands: list[click.Command] = [
        users,
        clients,
        resource_servers,
        tokens,
        audit_command,
        serve_command,
        demo_command,
        ifttt_check_command,
        check_command,
        shim_check_command,
        db_group,
    ]
    return {str(command.name): command for command in commands}


def authserver_version() -> str:
    """Return the installed authserver version."""
    try:
        return package_version("authserver")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "unknown"


def _create_app() -> Flask:
    from .. import create_app

    app = create_app()
    # Admin commands print their own results; audit lines still reach the database.
    logging.getLogger("authserver").setLevel(logging.WARNING)
    return app


# Plain commands already wrapped to run in the app context (build_cli may run again).
_IN_APP_CONTEXT: set[str] = set()


class AuthserverGroup(click.Group):
    """The top-level group: our commands only, the app created when one runs.

    Flask's own FlaskGroup would add ``run``, ``shell`` and ``routes``, the
    ``--app``/``--env-file``/``--debug`` options and its dotenv hints, and would build
    the app just to print ``--help`` (failing there on a bad setting).
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Carry a ScriptInfo, which Flask's ``with_appcontext`` loads the app from."""
        extra.setdefault(
            "obj",
            ScriptInfo(create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False),
        )
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; bad settings and database trouble end in one line."""
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            raise ConfigErrorExit(error.message) from None
        except SQLAlchemyError as error:
            info = ctx.find_object(ScriptInfo)
            app = getattr(info, "_loaded_app", None)
            url = str(app.config["DATABASE_URL"]) if app is not None else None
            raise click.ClickException(describe_database_error(error, url)) from None
        except OSError as error:
            # A file the settings point at (SQLite database, instance folder) cannot
            # be created or opened: name it, not the stack that found out.
            where = f" {error.filename}" if error.filename else ""
            raise click.ClickException(
                f"cannot use{where}: {error.strerror or error} "
                "(check AUTHSERVER_DATABASE_URL and AUTHSERVER_INSTANCE_PATH)"
            ) from None


def build_cli() -> AuthserverGroup:
    """Build the `authserver` command group."""
    group = AuthserverGroup(
        name="authserver",
        help=(
            "Administer the authserver OAuth 2.0 authorization server.\n\n"
            "Settings come from AUTHSERVER_* environment variables (see the README)."
        ),
    )
    for name, command in admin_commands().items():
        # Plain commands (not AppGroup members) need the app context pushed for them.
        callback = command.callback
        if (
            not isinstance(command, click.Group)
            and callback is not None
            and name not in _IN_APP_CONTEXT
        ):
            # with_appcontext does nothing when a context is already pushed, so
            # the same command still runs under app.cli (the tests' runner).
            command.callback = with_appcontext(callback)
            _IN_APP_CONTEXT.add(name)
        group.add_command(command, name)
    click.version_option(
        authserver_version(),
        "--version",
        prog_name="authserver",
        message="%(prog)s %(version)s",
        help="Print authserver's version and exit.",
    )(group)
    return group


def main() -> None:
    """Run the `authserver` console script."""
    build_cli().main(prog_name="authserver")
