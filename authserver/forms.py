"""Flask-WTF forms; each carries a CSRF token."""

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField(
        "Username",
        validators=[DataRequired(), Length(max=150)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class ConsentForm(FlaskForm):
    """Allow or deny; the decision comes from the button pressed."""

    decision = HiddenField()


class DisconnectForm(FlaskForm):
    """Revoke one connected app."""

    client_id = HiddenField(validators=[DataRequired(), Length(max=64)])


class LogoutForm(FlaskForm):
    """Sign out (a POST with a CSRF token)."""
