"""Domain errors raised by services and translated at the edges."""


class AuthServerError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AuthServerError):
    """A setting is invalid or unsafe; start-up stops."""


class NotFoundError(AuthServerError):
    """A named user, client or other record does not exist."""


class ConflictError(AuthServerError):
    """A record with the same unique name already exists."""


class ValidationError(AuthServerError):
    """Input is malformed or out of range."""


class GrantError(AuthServerError):
    """The presented code or refresh token is invalid (OAuth ``invalid_grant``)."""

    #: The grant's owner (user public id) when the token was found, for the edge's log.
    user_public_id: str | None = None


class ScopeError(AuthServerError):
    """The requested scope exceeds what was granted (OAuth ``invalid_scope``)."""

    #: The grant's owner (user public id), for the edge's log.
    user_public_id: str | None = None
