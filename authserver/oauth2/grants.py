"""The authorization-code (with PKCE) and refresh-token grants on Authlib."""

from __future__ import annotations

from typing import Any
from typing import ClassVar

from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import UnauthorizedClientError
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge

from ..database import read_without_transaction
from ..database import statements_are_round_trips
from ..errors import GrantError
from ..errors import ScopeError
from ..logs import note_request
from ..models import OAuth2Client
from ..models.oauth2 import ClientRulesMixin
from ..security import new_token
from ..services import codes as code_service
from ..services import refresh as refresh_service
from ..services.codes import RedeemableCode
from ..services.interfaces import ClientRules

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; required for public clients (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        """Reject plain PKCE, and public clients that send no challenge."""
        payload = grant.request.payload
        challenge = payload.data.get("code_challenge")
        method = payload.data.get("code_challenge_method")
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        if not challenge and not grant.request.client.is_confidential:
            raise InvalidRequestError("Public clients must send a PKCE code_challenge.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with hashed, single-use codes and atomic redemption."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: OAuth2Client) -> str:
        """Refuse an unregistered redirect URI without quoting it back.

        Authlib puts the URI into error_description: any byte breaks its RFC 6749 §5.2
        check (a 500), and any text lands on our error page.
        """
        presented = request.payload.redirect_uri
        if presented and not client.check_redirect_uri(presented):
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        redirect_uri: str = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(
            request, client
        )
        return redirect_uri

    def validate_authorization_request(self) -> str:
        """Also refuse scopes the client is not allowed (instead of trimming them)."""
        redirect_uri: str = super().validate_authorization_request()
        requested = (self.request.payload.scope or "").split()
        client: OAuth2Client = self.request.client
        if any(scope not in client.scopes for scope in requested):
            raise InvalidScopeError(redirect_uri=redirect_uri, state=self.request.payload.state)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        """Return a 256-bit random code."""
        return new_token()

    def save_authorization_code(self, code: str, request: Any) -> None:
        """Store the code's hash with everything it is bound to."""
        payload = request.payload
        code_service.create_authorization_code(
            code=code,
            oauth_client=request.client,
            user=request.user,
            # Only what the request named: RFC 6749 §4.1.3 asks the token request to
            # repeat the redirect_uri if, and only if, the authorization request had one.
            redirect_uri=payload.redirect_uri or None,
            scope=request.scope,
            code_challenge=payload.data.get("code_challenge"),
            code_challenge_method=payload.data.get("code_challenge_method"),
        )

    def validate_token_request(self) -> None:
        """Also refuse a redirect_uri the code was not sent to.

        Authlib compares the token request's redirect_uri with the authorization
        request's when that one had it (RFC 6749 §4.1.3). A code issued without one
        went to the client's only registered URI: a redirect_uri sent anyway must
        name that URI.
        """
        super().validate_token_request()
        code: RedeemableCode = self.request.authorization_code
        presented = self.request.payload.redirect_uri
        if code.redirect_uri is None and presented is not None:
            client: ClientRulesMixin = self.request.client
            if presented != client.get_default_redirect_uri():
                raise InvalidGrantError("Invalid 'redirect_uri' in request.")

    def query_authorization_code(self, code: str, client: ClientRules) -> RedeemableCode | None:
        """Find a redeemable code; a replayed one revokes its tokens and fails."""
        if not isinstance(code, str) or len(code) > 512:
            return None
        return code_service.find_authorization_code(code, client)

    def delete_authorization_code(self, authorization_code: RedeemableCode) -> None:
        """Nothing to do: redemption already marked the code used."""

    def authenticate_user(self, authorization_code: RedeemableCode) -> str | None:
        """Return the code's user (public id) unless the account was disabled meanwhile."""
        if authorization_code.user_disabled:
            return None
        return authorization_code.user_public_id

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Consume the code and issue tokens in one unit of work."""
        code: RedeemableCode = self.request.authorization_code
        if self.authenticate_user(code) is None:
            raise InvalidGrantError("The user of this code is disabled.")
        # The row, or the AuthenticatedClient of a client that proved its secret.
        client: ClientRulesMixin = self.request.client
        try:
            body = code_service.redeem_authorization_code(
                code,
                oauth_client=client,
                include_refresh_token=client.check_grant_type("refresh_token"),
            )
        except GrantError as error:
            raise InvalidGrantError(error.message) from None
        note_request(client_id=client.client_id, user_id=code.user_public_id)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 6749 §6 with rotation, a replay window and reuse detection."""

    GRANT_TYPE = "refresh_token"
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        """Authenticate the client and check the refresh_token parameter."""
        # PostgreSQL: the client and the presented token are read without BEGIN, and
        # a rotation is then one statement (services/refresh.py): no BEGIN or COMMIT
        # round trip. Paths that write more begin their own transaction.
        read_without_transaction()
        presented = self.request.form.get("refresh_token")
        if presented and len(presented) <= 512 and statements_are_round_trips():
            # One query reads the presented token and the credential generation the
            # client's cached secret is checked against (SQLite reads them apart, at
            # fewer instructions). Nothing of the row is used or told before the
            # client is authenticated.
            generation, row = refresh_service.read_presented_refresh(presented)
            self.request.credential_generation = generation
            self.request.presented_refresh = row
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use refresh tokens.")
        if not presented:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        self.request.client = client

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Exchange the refresh token through the token service."""
        presented = self.request.form["refresh_token"]
        if len(presented) > 512:
            raise InvalidGrantError("The refresh token is invalid.")
        client_id = self.request.client.client_id
        try:
            refreshed = refresh_service.refresh(
                presented,
                oauth_client=self.request.client,
                requested_scope=self.request.form.get("scope"),
                presented_row=getattr(self.request, "presented_refresh", refresh_service.NOT_READ),
            )
        except ScopeError as error:
            # The request log names the grant's owner, refused or not.
            note_request(client_id=client_id, user_id=error.user_public_id)
            raise InvalidScopeError(error.message) from None
        except GrantError as error:
            if error.user_public_id is not None:
                note_request(client_id=client_id, user_id=error.user_public_id)
            raise InvalidGrantError(error.message) from None
        note_request(client_id=client_id, user_id=refreshed.user_public_id)
        return 200, refreshed.body, self.TOKEN_RESPONSE_HEADER
