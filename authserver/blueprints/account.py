"""The user's "Connected apps" page."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask_babel import gettext
from flask_login import current_user
from flask_login import login_required

from ..clock import utcnow
from ..forms import DisconnectForm
from ..services import clients as client_service
from ..services import consents as consent_service

bp = Blueprint("account", __name__)


@bp.get("/")
def index() -> Response:
    """Send visitors to their connected apps (or the login page)."""
    return redirect(url_for("account.apps"))  # type: ignore[return-value]


@bp.get("/account/apps")
@login_required
def apps() -> str:
    """List the apps the user has connected, each with a revoke button."""
    return render_template(
        "account/apps.html",
        apps=consent_service.connected_apps(current_user),
        form=DisconnectForm(),
        user=current_user,
        now=utcnow(),
    )


@bp.post("/account/apps/revoke")
@login_required
def revoke() -> Response:
    """Forget consent for one app and revoke its tokens."""
    form = DisconnectForm()
    if not form.validate_on_submit():
        abort(400)
    oauth_client = client_service.get_client(form.client_id.data or "")
    if oauth_client is None:
        abort(404)
    consent_service.disconnect(current_user, oauth_client)
    flash(gettext("Disconnected %(app)s.", app=oauth_client.name))
    return redirect(url_for("account.apps"))  # type: ignore[return-value]
