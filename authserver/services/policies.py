"""Refresh-token policies per client: the profiles (ifttt, google, alexa, strict).

Each platform that links accounts by OAuth has its own refresh rules (README
"Refresh policies"); a client carries a profile and optional overrides, and
``policy_for`` combines them with the server-wide settings. Everything it reads is
on the client object the token endpoint already loaded: no query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app

from ..errors import ValidationError
from .interfaces import ClientRules

PROFILES = ("ifttt", "google", "alexa", "strict")
#: Grace value meaning "until the successor is first used, with no time bound".
UNTIL_USED = "until-used"
# Alexa treats a refresh answer without expires_in as expiring at once; when the
# server issues non-expiring access tokens, an alexa client still gets this lifetime.
ALEXA_FALLBACK_ACCESS_SECONDS = 3600


@dataclass(frozen=True)
class TokenPolicy:
    """The token rules in force for one client.

    ``grace`` None means "until the successor is first used" (no time bound); then
    every replay also mints a fresh access token, since the sealed one may be old.
    """

    profile: str
    access_lifetime: timedelta | None
    rotation: bool
    grace: timedelta | None
    max_replays: int
    reuse_revokes_family: bool

    @property
    def fresh_access_on_replay(self) -> bool:
        """Tell whether each replay gets a new access token (Google's rule)."""
        return self.grace is None


def profile_of(oauth_client: ClientRules) -> str:
    """Return the client's profile: its own, else ifttt (confidential) / strict (public)."""
    if oauth_client.refresh_profile:
        return oauth_client.refresh_profile
    return "ifttt" if oauth_client.is_confidential else "strict"


def policy_for(oauth_client: ClientRules, config: Mapping[str, Any] | None = None) -> TokenPolicy:
    """Combine the client's profile and overrides with the server-wide settings."""
    settings = current_app.config if config is None else config
    profile = profile_of(oauth_client)
    # The profiles: ifttt is the server-wide settings (today's behaviour); the others
    # are fixed by their platform's documented rules.
    rotation = bool(settings["REFRESH_ROTATION"])
    grace: timedelta | None = timedelta(seconds=int(settings["REFRESH_GRACE_SECONDS"]))
    reuse_revokes = bool(settings["REFRESH_REUSE_REVOKES_FAMILY"])
    if profile == "google":
        rotation, grace, reuse_revokes = True, None, True
    elif profile == "alexa":
        rotation, grace, reuse_revokes = False, timedelta(0), True
    elif profile == "strict":
        rotation, grace, reuse_revokes = True, timedelta(0), True
    if oauth_client.refresh_rotation is not None:
        rotation = oauth_client.refresh_rotation
    if oauth_client.refresh_grace_until_used:
        grace = None
    elif oauth_client.refresh_grace_lifetime is not None:
        grace = timedelta(seconds=oauth_client.refresh_grace_lifetime)
    if oauth_client.refresh_reuse_revokes_family is not None:
        reuse_revokes = oauth_client.refresh_reuse_revokes_family
    access = oauth_client.access_lifetime(int(settings["ACCESS_TOKEN_TTL"]))
    if profile == "alexa" and access is None:
        access = timedelta(seconds=ALEXA_FALLBACK_ACCESS_SECONDS)
    return TokenPolicy(
        profile=profile,
        access_lifetime=access,
        rotation=rotation,
        grace=grace,
        max_replays=int(settings["REFRESH_MAX_REPLAYS"]),
        reuse_revokes_family=reuse_revokes,
    )


def describe_policy(policy: TokenPolicy) -> dict[str, Any]:
    """Return the effective policy as a JSON-ready document (``refresh_policy``)."""
    return {
        "profile": policy.profile,
        "rotation": policy.rotation,
        "grace": UNTIL_USED if policy.grace is None else int(policy.grace.total_seconds()),
        "reuse_revokes_family": policy.reuse_revokes_family,
        "access_ttl": int(policy.access_lifetime.total_seconds()) if policy.access_lifetime else 0,
        "max_replays": policy.max_replays,
    }


def parse_grace(value: str) -> int | None:
    """Parse ``--grace``: whole seconds, or ``until-used`` (returned as None).

    :raises ValidationError: for anything else.
    """
    text = value.strip().lower()
    if text == UNTIL_USED:
        return None
    if not text.isdigit() or len(text) > 9:
        raise ValidationError("--grace must be whole seconds (e.g. 120) or 'until-used'")
    return int(text)


def check_profile(profile: str) -> str:
    """Return a known profile name.

    :raises ValidationError: for an unknown one.
    """
    if profile not in PROFILES:
        raise ValidationError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    return profile
