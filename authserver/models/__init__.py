"""Every model, imported so that each table is registered with the metadata."""

from .audit import AuditEvent
from .credentials import CredentialChanges
from .oauth2 import AccessToken
from .oauth2 import AuthorizationCode
from .oauth2 import Consent
from .oauth2 import CredentialSecret
from .oauth2 import OAuth2Client
from .oauth2 import RefreshToken
from .oauth2 import ResourceServer
from .oauth2 import TokenFamily
from .oauth2 import TokenPolicy
from .session import UserSession
from .shim import ShimTestPermission
from .user import User

__all__ = [
    "AccessToken",
    "AuditEvent",
    "AuthorizationCode",
    "Consent",
    "CredentialChanges",
    "CredentialSecret",
    "OAuth2Client",
    "RefreshToken",
    "ResourceServer",
    "ShimTestPermission",
    "TokenFamily",
    "TokenPolicy",
    "User",
    "UserSession",
]
