"""Login and logout pages."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_babel import gettext
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user

from .. import signals
from ..forms import LoginForm
from ..forms import LogoutForm
from ..limits import get_remote_address
from ..limits import login_limit_exceeded
from ..limits import record_login_failure
from ..limits import too_many
from ..models import User
from ..services import sessions as session_service
from ..services import users as user_service
from ..services.audit import record_failure_now

bp = Blueprint("auth", __name__)
security_log = logging.getLogger("authserver.security")

LOGIN_FAILED = lazy_gettext("Invalid username or password.")
# The cookie session's key for the server-side login id (services/sessions.py).
SESSION_ID_KEY = "sid"


def load_user(user_id: str) -> User | None:
    """Return the user of the cookie's login while it is live on the server (Flask-Login)."""
    return session_service.get_session_user(user_id, session.get(SESSION_ID_KEY))


def safe_next(target: str | None) -> str | None:
    """Return a same-site path to continue to, or None (no open redirects)."""
    if not target or len(target) > 4096:
        return None
    # Only local absolute paths: "//host" and "/\host" are protocol-relative in browsers.
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ord(ch) < 0x20 for ch in target) or "\\" in target.split("?", 1)[0]:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Show the login form and log the user in."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        # "Not you? Switch account" on the consent page: show the form even to a
        # signed-in user; signing in replaces the session (see below).
        switching = (
            current_user if current_user.is_authenticated and "switch" in request.args else None
        )
        if current_user.is_authenticated and form.next.data and switching is None:
            return redirect(form.next.data)  # type: ignore[return-value]
        return render_template("auth/login.html", form=form, switching=switching)
    if not form.validate_on_submit():
        status = 400
        error = (
            gettext("Please fill in both fields.")
            if form.csrf_token.errors == []
            else gettext("Your session expired. Please try again.")
        )
        return render_template("auth/login.html", form=form, error=error), status
    username = form.username.data or ""
    wait = login_limit_exceeded(username, get_remote_address())
    if wait:
        return too_many(wait, form)
    user = user_service.authenticate(username, form.password.data or "")
    if user is None:
        record_login_failure(username, get_remote_address())
        security_log.warning("login failed username=%s", username[:150])
        record_failure_now("login.failed", address=get_remote_address(), username=username[:150])
        signals.login_failed.send()
        return render_template("auth/login.html", form=form, error=LOGIN_FAILED), 401
    target = safe_next(form.next.data) or url_for("account.apps")
    # A login replacing another in this browser (switch account) ends that one on
    # the server too, so a copy of the old cookie stops working.
    session_service.close_session(session.get(SESSION_ID_KEY))
    # Drop everything from before the login (session fixation); Flask-WTF issues a
    # fresh CSRF secret into the new session.
    session.clear()
    login_user(user)
    session[SESSION_ID_KEY] = session_service.open_session(
        user, lifetime=current_app.permanent_session_lifetime
    )
    session.permanent = True
    return redirect(target)  # type: ignore[return-value]


@bp.get("/logout")
def logout_page() -> str:
    """Explain signing out, with the button that does it (a link must not sign out)."""
    user = current_user if current_user.is_authenticated else None
    return render_template("auth/logout.html", user=user, form=LogoutForm())


@bp.post("/logout")
def logout() -> Response:
    """Log out (POST with CSRF, so a link on another site cannot do it).

    The login ends on the server too, so a copy of the cookie is useless after.
    """
    session_service.close_session(session.get(SESSION_ID_KEY))
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))  # type: ignore[return-value]
