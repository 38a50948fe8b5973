"""Create, change, authenticate and delete users."""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib.resources import files

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..database import db
from ..errors import ConflictError
from ..errors import NotFoundError
from ..errors import ValidationError
from ..models import TokenFamily
from ..models import User
from ..security import hash_password
from ..security import verify_password
from .audit import record_event
from .revocation import revoke_families

MAX_PASSWORD_LENGTH = 1024


def normalize_username(username: str) -> str:
    """Normalize a username (NFKC, trimmed) so look-alike forms collide."""
    return unicodedata.normalize("NFKC", username).strip()


def _check_username(username: str) -> str:
    name = normalize_username(username)
    if not name:
        raise ValidationError("username must not be empty")
    if len(name) > 150:
        raise ValidationError("username must be at most 150 characters")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in name):
        raise ValidationError("username must not contain spaces or control characters")
    return name


def _check_password(password: str, *, username: str, email: str | None = None) -> None:
    """Apply the password policy (NIST SP 800-63B §5.1.1.2: length and a blocklist).

    :raises ValidationError: naming the rule the password breaks.
    """
    if not password:
        raise ValidationError("password must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    if "\x00" in password:
        raise ValidationError("password must not contain NUL characters")
    if not _is_utf8(password):
        raise ValidationError("password must be valid UTF-8")
    minimum = int(current_app.config["MIN_PASSWORD_LENGTH"])
    if len(password) < minimum:
        raise ValidationError(
            f"password must be at least {minimum} characters "
            "(AUTHSERVER_MIN_PASSWORD_LENGTH); a few words make a good one"
        )
    folded = password.strip().casefold()
    if folded in {username.casefold(), (email or "").casefold()}:
        raise ValidationError("password must not be the username or e-mail address")
    if folded in common_passwords():
        raise ValidationError(
            "password is one of the most common passwords (attackers try these first); "
            "choose another"
        )


@cache
def common_passwords() -> frozenset[str]:
    """Return the shipped list of the most common passwords (lowercased)."""
    # Read only when a password is set (CLI), never in a serving worker.
    data = files("authserver").joinpath("data", "common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def _check_text(label: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise ValidationError(f"{label} must not be empty")
    if len(value) > limit:
        raise ValidationError(f"{label} must be at most {limit} characters")
    if "\x00" in value:
        raise ValidationError(f"{label} must not contain NUL characters")
    if not _is_utf8(value):
        raise ValidationError(f"{label} must be valid UTF-8")
    return value


def _is_utf8(value: str) -> bool:
    # Lone surrogates (undecodable bytes from a C-locale terminal) cannot be hashed
    # or stored; reject them here instead of failing deep in argon2 or the driver.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def create_user(username: str, *, name: str, password: str, email: str | None = None) -> User:
    """Create a user with an argon2 password hash and commit.

    :raises ValidationError: for an empty or malformed field.
    :raises ConflictError: when the username is taken.
    """
    username = _check_username(username)
    name = _check_text("name", name, 200)
    if email is not None:
        email = _check_text("email", email, 320)
        if "@" not in email:
            raise ValidationError("email must contain '@'")
    _check_password(password, username=username, email=email)
    if get_user(username) is not None:
        raise ConflictError(f"user {username!r} already exists")
    user = User(
        username=username,
        name=name,
        email=email,
        password_hash=hash_password(password),
    )
    db.session.add(user)
    record_event("user.created", actor="cli", username=username)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"user {username!r} already exists") from None
    return user


def get_user(username: str) -> User | None:
    """Return the user with this username, if any."""
    # Usernames never hold NUL (PostgreSQL refuses it in a query, so ask nothing).
    if "\x00" in username:
        return None
    return db.session.scalar(select(User).where(User.username == normalize_username(username)))


def require_user(username: str) -> User:
    """Return the user with this username.

    :raises NotFoundError: when there is none.
    """
    user = get_user(username)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def list_users() -> list[User]:
    """Return every user, by username."""
    return list(db.session.scalars(select(User).order_by(User.username)))


def authenticate(username: str, password: str) -> User | None:
    """Return the user if the password is right and the account enabled.

    Unknown users cost one argon2 verification too, so the answer time does not
    reveal whether a username exists.
    """
    user = get_user(username) if len(username) <= 150 else None
    ok = verify_password(user.password_hash if user else None, password[:MAX_PASSWORD_LENGTH])
    if user is None or not ok or user.disabled:
        return None
    return user


def set_password(username: str, password: str) -> User:
    """Change a user's password, end their sessions, and commit."""
    user = require_user(username)
    _check_password(password, username=user.username, email=user.email)
    user.password_hash = hash_password(password)
    user.session_epoch += 1
    record_event("user.changed", actor="cli", username=user.username, change="password")
    db.session.commit()
    return user


def set_disabled(username: str, *, disabled: bool) -> User:
    """Disable or enable a user and commit; disabling ends their sessions."""
    user = require_user(username)
    if user.disabled != disabled:
        user.disabled = disabled
        user.session_epoch += 1
        record_event(
            "user.changed",
            actor="cli",
            username=user.username,
            change="disabled" if disabled else "enabled",
        )
        db.session.commit()
    return user


def delete_user(username: str) -> None:
    """Revoke every token of the user, delete the account, and commit."""
    user = require_user(username)
    live = select(TokenFamily.id).where(TokenFamily.user_id == user.id, TokenFamily.live())
    # The cascade then removes the rows; the trail keeps which grants ended and why.
    revoke_families(list(db.session.scalars(live)), "user_deleted", actor="cli")
    record_event("user.deleted", actor="cli", username=user.username)
    db.session.delete(user)
    db.session.commit()
