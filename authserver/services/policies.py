"""Refresh policies as the CLI and the admin documents show and accept them.

The policy itself is a token rule on the client (``ClientRulesMixin.token_policy``
in models/oauth2.py, with the profiles); this module describes it and parses and
checks what an admin types.
"""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ..models.oauth2 import PROFILES
from ..models.oauth2 import TokenPolicy

#: Grace value meaning "until the successor is first used", with no time bound.
UNTIL_USED = "until-used"


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
