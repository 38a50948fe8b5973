"""Flask extensions, created unbound and bound in create_app.

Flask-Migrate is bound with the CLI (app_setup.init_cli): only commands use it, and
importing Alembic would cost every serving worker about 11 MB.
"""

from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

login_manager = LoginManager()
csrf = CSRFProtect()
