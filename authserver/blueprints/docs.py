"""The OpenAPI document of the machine-facing endpoints."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify

from .. import error_formats

bp = Blueprint("docs", __name__)
error_formats.declare(bp, "json", prefixes=("/openapi.json",))

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"


@cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3 document shipped inside the package (read once)."""
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document for token, revocation, introspection, metadata, user info."""
    response = jsonify(openapi_document())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
