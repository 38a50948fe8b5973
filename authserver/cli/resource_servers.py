"""`authserver resource-servers ...`: the shims that introspect tokens."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..models import ResourceServer
from ..services import clients as client_service
from ..services import shim_test_tokens as test_token_service
from .output import domain_errors
from .output import emit_json
from .output import emit_table
from .output import iso
from .output import json_option
from .secrets_commands import add_secret_commands

resource_servers = AppGroup(
    "resource-servers", help="Register the shims allowed to introspect tokens."
)


def _document(server: ResourceServer) -> dict[str, object]:
    return {
        "id": server.server_id,
        "name": server.name,
        "disabled": server.disabled,
        "created_at": iso(server.created_at),
    }


@resource_servers.command("create")
@click.argument("name")
@json_option
@domain_errors
def create(name: str, as_json: bool) -> None:
    """Register a resource server; prints its id and secret (shown once)."""
    server, secret = client_service.register_resource_server(name)
    if as_json:
        document = _document(server)
        document["secret"] = secret
        emit_json(document)
        return
    click.echo(f"Created resource server {server.name}")
    click.echo(f"  id:     {server.server_id}")
    click.echo(f"  secret: {secret}   (shown once; store it now)")


@resource_servers.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """List resource servers."""
    rows = client_service.list_resource_servers()
    if as_json:
        emit_json([_document(s) for s in rows])
        return
    emit_table(["id", "name", "created"], [[s.server_id, s.name, iso(s.created_at)] for s in rows])


@resource_servers.command("delete")
@click.argument("server_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@domain_errors
def delete(server_id: str, yes: bool) -> None:
    """Delete a resource server; its credentials stop working."""
    client_service.require_resource_server(server_id)
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("refusing to delete without --yes (no terminal to ask)")
        click.confirm(f"Delete resource server {server_id}?", abort=True)
    client_service.delete_resource_server(server_id)
    click.echo(f"Deleted resource server {server_id}.")


@resource_servers.command("allow-test-tokens")
@click.argument("server_id")
@click.option("--user", "username", help="The test user the tokens belong to.")
@click.option("--client", "client_id", help="The client (IFTTT's) the tokens are issued to.")
@click.option("--revoke", is_flag=True, help="Take the permission back; its tokens stop working.")
@domain_errors
def allow_test_tokens(
    server_id: str, username: str | None, client_id: str | None, revoke: bool
) -> None:
    """Let a shim mint test tokens at POST /shim/test-token (IFTTT's test/setup)."""
    if revoke:
        if username or client_id:
            raise click.ClickException("--revoke takes no --user or --client")
        if test_token_service.revoke_test_tokens(server_id):
            click.echo(f"Resource server {server_id} may no longer mint test tokens.")
        else:
            click.echo(f"Resource server {server_id} had no test-token permission.")
        return
    if not username:
        raise click.ClickException("say whose test tokens: --user USERNAME")
    if not client_id:
        raise click.ClickException("say through which client: --client CLIENT_ID")
    test_token_service.allow_test_tokens(server_id, username=username, client_id=client_id)
    click.echo(
        f"Resource server {server_id} may mint test tokens for {username} "
        f"through {client_id} (POST /shim/test-token)."
    )


add_secret_commands(
    resource_servers,
    noun="resource server",
    argument="server_id",
    id_key="id",
    require=client_service.require_resource_server,
)
