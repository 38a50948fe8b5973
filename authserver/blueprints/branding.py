"""The theme stylesheet (accent colour) and the favicon."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app

from ..branding import branding

bp = Blueprint("branding", __name__)


@bp.get("/theme.css")
def theme_css() -> Response:
    """Serve the accent colour as CSS variables (pages may not carry inline styles)."""
    response = Response(branding().theme_css, mimetype="text/css")
    # Pages link it with ?v=<digest of the content>, so a long cache is safe.
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/favicon.ico")
def favicon() -> Any:
    """Serve the favicon where browsers look first (instance/static/ overrides it)."""
    return current_app.view_functions["static"](filename="favicon.ico")
