"""`authserver tokens ...`: test tokens, revocation, listing and purge."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..errors import ValidationError
from ..models import AccessToken
from ..models import RefreshToken
from ..services import clients as client_service
from ..services import purge as purge_service
from ..services import revocation as revocation_service
from ..services import tokens as token_service
from ..services import users as user_service
from .output import domain_errors
from .output import emit_json
from .output import emit_table
from .output import iso
from .output import json_option

tokens = AppGroup("tokens", help="Issue test tokens, revoke and purge tokens.")


@tokens.command("issue")
@click.option("--user", "username", required=True, help="The test account.")
@click.option("--client", "client_id", required=True, help="The client the token is for.")
@click.option("--scope", default=None, help="Scope (default: the client's scopes).")
@json_option
@domain_errors
def issue(username: str, client_id: str, scope: str | None, as_json: bool) -> None:
    """Mint an access and refresh token (e.g. for IFTTT's test/setup); committed first."""
    user = user_service.require_user(username)
    oauth_client = client_service.require_client(client_id)
    body = token_service.issue_tokens_for(user, oauth_client, scope=scope)
    if as_json:
        emit_json(body)
        return
    click.echo(f"access_token:  {body['access_token']}")
    click.echo(f"refresh_token: {body['refresh_token']}")
    if "expires_in" in body:
        click.echo(f"expires_in:    {body['expires_in']}")
    click.echo(f"scope:         {body['scope']}")


@tokens.command("revoke")
@click.option("--user", "username", default=None, help="Revoke every token of this user.")
@click.option("--client", "client_id", default=None, help="Revoke every token of this client.")
@click.option("--token", "raw_token", default=None, help="Revoke one token's whole grant.")
@domain_errors
def revoke(username: str | None, client_id: str | None, raw_token: str | None) -> None:
    """Revoke tokens by user, by client, or by one token (its whole family)."""
    if sum(x is not None for x in (username, client_id, raw_token)) != 1:
        raise click.UsageError("give exactly one of --user, --client or --token")
    if raw_token is not None:
        if len(raw_token) > 512:
            raise ValidationError("no such token")
        found = revocation_service.find_token(raw_token)
        if found is None:
            raise ValidationError("no such token")
        revoked = revocation_service.revoke_family(found.family_id, reason="admin")
        click.echo("Revoked the token's family." if revoked else "That family was already revoked.")
        return
    # "is not None": an empty --user "" must not fall through to "every family".
    user = user_service.require_user(username) if username is not None else None
    oauth_client = client_service.require_client(client_id) if client_id is not None else None
    count = revocation_service.revoke_grants(user=user, oauth_client=oauth_client, reason="admin")
    click.echo(f"Revoked {count} token famil{'y' if count == 1 else 'ies'}.")


@tokens.command("list")
@click.option("--user", "username", default=None, help="Only this user's grants.")
@click.option("--client", "client_id", default=None, help="Only this client's grants.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked grants.")
@json_option
@domain_errors
def list_command(
    username: str | None, client_id: str | None, include_revoked: bool, as_json: bool
) -> None:
    """List token families (grants); never the tokens themselves."""
    user = user_service.require_user(username) if username is not None else None
    oauth_client = client_service.require_client(client_id) if client_id is not None else None
    families = revocation_service.list_families(
        user=user, oauth_client=oauth_client, live_only=not include_revoked
    )
    rows = [
        {
            "family": f.id,
            "user": f.user.username,
            "client_id": f.oauth_client.client_id,
            "scope": f.scope,
            "created_at": iso(f.created_at),
            "revoked_at": iso(f.revoked_at),
            "revoke_reason": f.revoke_reason,
        }
        for f in families
    ]
    if as_json:
        emit_json(rows)
        return
    emit_table(
        ["family", "user", "client_id", "scope", "created", "revoked"],
        [
            [
                r["family"],
                r["user"],
                r["client_id"],
                r["scope"],
                r["created_at"],
                r["revoked_at"] or "",
            ]
            for r in rows
        ],
    )


@tokens.command("purge")
@json_option
def purge(as_json: bool) -> None:
    """Erase expired replay seeds, dead codes and dead families (batched)."""
    result = purge_service.purge()
    document = {
        "ciphertexts_erased": result.ciphertexts,
        "codes_deleted": result.codes,
        "families_deleted": result.families,
    }
    if as_json:
        emit_json(document)
    else:
        click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in document.items()))


__all__ = ["AccessToken", "RefreshToken", "tokens"]
