"""WSGI entry point: ``gunicorn bench.reference.wsgi:app`` (settings from REFERENCE_*)."""

from bench.reference.app import create_app

app = create_app()
