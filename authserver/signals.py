"""Signals for what happens to tokens, clients and requests, as Flask's own signals.py.

Services, the limiter and the edges send them; ``metrics.py`` subscribes. A sender
never needs to know who listens, so services look up nothing in ``current_app``.
Receivers get the sender (None: these are sent from module-level functions) and
the keyword arguments named below.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# A new token family was issued from an authorization code.
token_issued = _signals.signal("token-issued")
# A refresh token was exchanged for a new token (rotated or reused).
token_refreshed = _signals.signal("token-refreshed")
# A rotated refresh token was replayed within its grace window and answered.
refresh_replayed = _signals.signal("refresh-replayed")
# A revoked or spent refresh token was presented (RFC 9700 §4.14.2).
reuse_detected = _signals.signal("reuse-detected")
# A token family was revoked; kwargs: family_id, reason.
family_revoked = _signals.signal("family-revoked")
# A client (or resource server) failed to authenticate.
client_auth_failed = _signals.signal("client-auth-failed")
# A login failed (unknown user or wrong password).
login_failed = _signals.signal("login-failed")
# A request was refused with 429.
rate_limited = _signals.signal("rate-limited")
# The rate-limit storage failed and per-process counters took over.
limit_storage_failed = _signals.signal("limit-storage-failed")
# A request failed because the database was unavailable.
database_unavailable = _signals.signal("database-unavailable")
