"""WSGI entry point for gunicorn: ``gunicorn 'authserver.wsgi:app'``."""

from . import create_app

app = create_app()
