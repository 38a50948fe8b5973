"""The IFTTT service kit: put an existing Python API on IFTTT with domain functions only.

``IftttService`` implements IFTTT's service protocol as a Flask blueprint;
``IntrospectionVerifier`` and ``ShimProtector`` are the lower layer (bearer tokens
checked by the authserver's introspection, with a cache). Importing this package
pulls in no authserver server module, database layer or password hashing: a shim
needs Flask, Authlib and requests (SQLAlchemy only for ``SQLAlchemyStore``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from .realtime import RealtimeClient
from .realtime import RealtimeError
from .service import IftttService
from .service import ShimDeveloperError
from .service import ShimUser
from .service import Skip
from .store import MemoryStore
from .store import TriggerIdentity
from .store import TriggerIdentityStore
from .verifier import AuthServerUnavailableError
from .verifier import IntrospectionVerifier
from .verifier import ShimProtector
from .verifier import current_token
from .verifier import ifttt_error

if TYPE_CHECKING:
    from .sqlalchemy_store import SQLAlchemyStore

__all__ = [
    "AuthServerUnavailableError",
    "IftttService",
    "IntrospectionVerifier",
    "MemoryStore",
    "RealtimeClient",
    "RealtimeError",
    "SQLAlchemyStore",
    "ShimDeveloperError",
    "ShimProtector",
    "ShimUser",
    "Skip",
    "TriggerIdentity",
    "TriggerIdentityStore",
    "current_token",
    "ifttt_error",
]


def __getattr__(name: str) -> Any:
    # SQLAlchemy is imported only by shims that use the SQLAlchemy store.
    if name == "SQLAlchemyStore":
        from .sqlalchemy_store import SQLAlchemyStore

        return SQLAlchemyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
