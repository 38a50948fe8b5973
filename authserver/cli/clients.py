"""`authserver clients ...`."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from ..models import OAuth2Client
from ..models import ResourceServer
from ..models.oauth2 import PROFILES
from ..services import clients as client_service
from ..services import revocation as revocation_service
from ..services.policies import UNTIL_USED
from ..services.policies import describe_policy
from ..services.policies import parse_grace
from .output import Duration
from .output import domain_errors
from .output import emit_json
from .output import emit_table
from .output import human
from .output import iso
from .output import json_option
from .output import seconds_text
from .secrets_commands import add_secret_commands

clients = AppGroup("clients", help="Register and manage OAuth clients (such as IFTTT).")


def client_document(oauth_client: OAuth2Client) -> dict[str, object]:
    """Describe a client for --json output (never a secret)."""
    return {
        "client_id": oauth_client.client_id,
        "name": oauth_client.name,
        "redirect_uris": list(oauth_client.redirect_uris),
        "scopes": list(oauth_client.scopes),
        "confidential": oauth_client.is_confidential,
        "disabled": oauth_client.disabled,
        "access_token_lifetime": oauth_client.access_token_lifetime,
        "refresh_grace_lifetime": oauth_client.refresh_grace_lifetime,
        "refresh_policy": describe_policy(oauth_client.token_policy(current_app.config)),
        "created_at": iso(oauth_client.created_at),
    }


def policy_options(command: Any) -> Any:
    """Add the refresh-policy options shared by `clients create` and `clients update`."""
    options = [
        click.option(
            "--profile",
            type=click.Choice(PROFILES),
            default=None,
            help="Refresh policy profile (default for new clients: ifttt if confidential, "
            "strict if public); choosing one clears the refresh overrides.",
        ),
        click.option(
            "--rotation/--no-rotation",
            default=None,
            help="Override: issue a new refresh token at each refresh, or keep it.",
        ),
        click.option(
            "--grace",
            default=None,
            metavar="SECONDS|until-used",
            help="Override: how long a rotated refresh token still returns its successor.",
        ),
        click.option(
            "--reuse-revokes-family/--no-reuse-revokes-family",
            default=None,
            help="Override: revoke the whole grant when a used refresh token comes back.",
        ),
        click.option(
            "--access-ttl",
            type=Duration(),
            default=None,
            help="Override: access token lifetime (0 = never expires).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def policy_change(
    profile: str | None,
    rotation: bool | None,
    grace: str | None,
    reuse_revokes_family: bool | None,
    access_ttl: timedelta | None,
) -> client_service.PolicyChange | None:
    """Turn the policy options into a change (None when none was given)."""
    if (profile, rotation, grace, reuse_revokes_family, access_ttl) == (None,) * 5:
        return None
    grace_seconds = parse_grace(grace) if grace is not None else None
    return client_service.PolicyChange(
        profile=profile,
        rotation=rotation,
        grace_seconds=grace_seconds,
        grace_until_used=grace is not None and grace_seconds is None,
        reuse_revokes_family=reuse_revokes_family,
        access_ttl=int(access_ttl.total_seconds()) if access_ttl is not None else None,
    )


def policy_text(policy: dict[str, Any]) -> str:
    """Render the effective refresh policy on one line, in the show command's style."""
    grace = policy["grace"]
    parts = [
        policy["profile"],
        "rotation" if policy["rotation"] else "no rotation",
        "grace until the successor is used"
        if grace == UNTIL_USED
        else f"grace {seconds_text(grace) if grace else '0'}",
        "reuse revokes the grant" if policy["reuse_revokes_family"] else "reuse refused only",
        f"access tokens {seconds_text(policy['access_ttl'])}",
    ]
    return ", ".join(parts)


@clients.command("create")
@click.argument("name")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Exact redirect URI; repeat for several.",
)
@click.option("--scope", "scopes", multiple=True, help="Allowed scope (default: ifttt).")
@click.option("--public", is_flag=True, help="A public client (no secret, PKCE required).")
@click.option("--client-id", default=None, help="Choose the client id (default: random).")
@policy_options
@json_option
@domain_errors
def create(
    name: str,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    public: bool,
    client_id: str | None,
    profile: str | None,
    rotation: bool | None,
    grace: str | None,
    reuse_revokes_family: bool | None,
    access_ttl: timedelta | None,
    as_json: bool,
) -> None:
    """Register a client and print its id and secret (the secret is shown once)."""
    oauth_client, secret = client_service.register_client(
        name,
        redirect_uris=list(redirect_uris),
        scopes=list(scopes) or None,
        public=public,
        client_id=client_id,
        policy=policy_change(profile, rotation, grace, reuse_revokes_family, access_ttl),
    )
    if as_json:
        document = client_document(oauth_client)
        document["client_secret"] = secret
        emit_json(document)
        return
    click.echo(f"Created client {oauth_client.name}")
    click.echo(f"  client_id:     {oauth_client.client_id}")
    if secret:
        click.echo(f"  client_secret: {secret}   (shown once; store it now)")
    policy = describe_policy(oauth_client.token_policy(current_app.config))
    click.echo(f"  refresh:       {policy_text(policy)}")


@clients.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """List clients."""
    rows = client_service.list_clients()
    if as_json:
        emit_json([client_document(c) for c in rows])
        return
    emit_table(
        ["client_id", "name", "redirect uris", "scopes", "status"],
        [
            [
                c.client_id,
                c.name,
                " ".join(c.redirect_uris),
                " ".join(c.scopes),
                "disabled" if c.disabled else "enabled",
            ]
            for c in rows
        ],
    )


@clients.command("show")
@click.argument("client_id")
@json_option
@domain_errors
def show(client_id: str, as_json: bool) -> None:
    """Show one client."""
    oauth_client = client_service.require_client(client_id)
    document = client_document(oauth_client)
    document["live_secrets"] = len(oauth_client.live_secrets())
    if as_json:
        emit_json(document)
        return
    config = current_app.config
    lines = {
        **document,
        "access_token_lifetime": seconds_text(
            oauth_client.access_token_lifetime, default=int(config["ACCESS_TOKEN_TTL"])
        ),
        "refresh_grace_lifetime": seconds_text(
            oauth_client.refresh_grace_lifetime, default=int(config["REFRESH_GRACE_SECONDS"])
        ),
        "refresh_policy": policy_text(document["refresh_policy"]),  # type: ignore[arg-type]
    }
    for key, value in lines.items():
        click.echo(f"{key:24} {human(value)}")


@clients.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@domain_errors
def delete(client_id: str, yes: bool) -> None:
    """Delete a client and every token it holds."""
    client_service.require_client(client_id)
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("refusing to delete without --yes (no terminal to ask)")
        click.confirm(f"Delete client {client_id} and revoke its tokens?", abort=True)
    client_service.delete_client(client_id)
    click.echo(f"Deleted client {client_id}; its tokens are gone.")


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None, help="New display name.")
@click.option("--add-redirect-uri", multiple=True, help="Register another redirect URI.")
@click.option("--remove-redirect-uri", multiple=True, help="Unregister a redirect URI.")
@click.option("--scope", "scopes", multiple=True, help="Replace the allowed scopes.")
@click.option(
    "--access-token-lifetime",
    type=Duration(),
    default=None,
    help="Per-client access token lifetime (0 = never expires).",
)
@click.option(
    "--grace-period", type=Duration(), default=None, help="Per-client refresh grace period."
)
@click.option("--reset-lifetimes", is_flag=True, help="Use the server-wide lifetimes again.")
@policy_options
@json_option
@domain_errors
def update(
    client_id: str,
    name: str | None,
    add_redirect_uri: tuple[str, ...],
    remove_redirect_uri: tuple[str, ...],
    scopes: tuple[str, ...],
    access_token_lifetime: timedelta | None,
    grace_period: timedelta | None,
    reset_lifetimes: bool,
    profile: str | None,
    rotation: bool | None,
    grace: str | None,
    reuse_revokes_family: bool | None,
    access_ttl: timedelta | None,
    as_json: bool,
) -> None:
    """Change a client's name, redirect URIs, scopes, lifetimes or refresh policy.

    A new refresh policy applies from the client's next refresh.
    """
    config = current_app.config
    oauth_client = client_service.update_client(
        client_id,
        name=name,
        add_redirect_uris=list(add_redirect_uri),
        remove_redirect_uris=list(remove_redirect_uri),
        scopes=list(scopes) if scopes else None,
        access_token_lifetime=int(access_token_lifetime.total_seconds())
        if access_token_lifetime is not None
        else None,
        refresh_grace_lifetime=int(grace_period.total_seconds())
        if grace_period is not None
        else None,
        clear_lifetimes=reset_lifetimes,
        policy=policy_change(profile, rotation, grace, reuse_revokes_family, access_ttl),
        default_access=int(config["ACCESS_TOKEN_TTL"]),
        default_grace=int(config["REFRESH_GRACE_SECONDS"]),
    )
    if as_json:
        emit_json(client_document(oauth_client))
    else:
        click.echo(f"Updated client {client_id}.")


def _set_disabled(client_id: str, disabled: bool) -> OAuth2Client:
    config = current_app.config
    return client_service.update_client(
        client_id,
        disabled=disabled,
        default_access=int(config["ACCESS_TOKEN_TTL"]),
        default_grace=int(config["REFRESH_GRACE_SECONDS"]),
    )


@clients.command("disable")
@click.argument("client_id")
@domain_errors
def disable(client_id: str) -> None:
    """Disable a client: it can do nothing and its tokens stop working."""
    oauth_client = client_service.require_client(client_id)
    if oauth_client.disabled:
        click.echo(f"Client {client_id} is already disabled.")
        return
    _set_disabled(client_id, True)
    click.echo(f"Disabled client {client_id}.")


@clients.command("enable")
@click.argument("client_id")
@domain_errors
def enable(client_id: str) -> None:
    """Enable a disabled client; its unexpired tokens work again."""
    oauth_client = client_service.require_client(client_id)
    if not oauth_client.disabled:
        click.echo(f"Client {client_id} is already enabled.")
        return
    _set_disabled(client_id, False)
    click.echo(f"Enabled client {client_id}.")


@clients.command("revoke-tokens")
@click.argument("client_id")
@domain_errors
def revoke_tokens(client_id: str) -> None:
    """Revoke every token family of a client."""
    oauth_client = client_service.require_client(client_id)
    count = revocation_service.revoke_grants(oauth_client=oauth_client, reason="admin")
    click.echo(f"Revoked {count} token famil{'y' if count == 1 else 'ies'}.")


def _must_be_confidential(oauth_client: OAuth2Client | ResourceServer, client_id: str) -> None:
    if isinstance(oauth_client, OAuth2Client) and not oauth_client.is_confidential:
        raise click.ClickException(f"client {client_id} is public and has no secret")


add_secret_commands(
    clients,
    noun="client",
    argument="client_id",
    id_key="client_id",
    require=client_service.require_client,
    can_rotate=_must_be_confidential,
)

__all__ = ["clients"]
