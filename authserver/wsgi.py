"""WSGI entry point for gunicorn: ``gunicorn 'authserver.wsgi:app'``."""

from . import create_app

# Serving only: no admin commands (see create_app).
app = create_app(cli=False)
