"""authserver: an OAuth 2.0 authorization server built around IFTTT's token rules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

__all__ = ["create_app"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> str:
    """Return the folder of shipped resources (templates, migrations, static).

    In a wheel they live inside the package; in a source checkout, beside it.
    """
    packaged = _PACKAGE_DIR / name
    if packaged.is_dir():
        return str(packaged)
    return str(_PACKAGE_DIR.parent / name)


def create_app(config: Mapping[str, Any] | None = None, *, cli: bool = True) -> Flask:
    """Build the application: config, extensions, OAuth server, blueprints, CLI.

    ``cli=False`` leaves out the admin commands and Flask-Migrate (with Alembic and
    requests behind them): a serving worker never runs them, and they cost it memory.

    :raises ConfigError: when a setting is invalid.
    """
    from .app_setup import init_blueprints
    from .app_setup import init_cli
    from .app_setup import init_config
    from .app_setup import init_database
    from .app_setup import init_error_handlers
    from .app_setup import init_login
    from .branding import init_branding
    from .i18n import init_i18n
    from .limits import init_limits
    from .metrics import init_metrics
    from .oauth2.server import init_oauth2
    from .request_cycle import init_request_cycle

    instance_path = os.environ.get("AUTHSERVER_INSTANCE_PATH") or None
    from .app_setup import AuthServerFlask

    app = AuthServerFlask(
        __name__,
        template_folder=resource_dir("templates"),
        static_folder=resource_dir("static"),
        instance_path=instance_path,
        instance_relative_config=False,
    )
    init_config(app, config)
    init_database(app)
    init_login(app)
    init_i18n(app)
    init_branding(app)
    init_oauth2(app)
    init_limits(app)
    init_metrics(app)
    init_request_cycle(app)
    init_blueprints(app)
    if cli:
        init_cli(app)
    init_error_handlers(app)
    return app
