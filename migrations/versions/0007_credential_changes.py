"""credential_changes: a generation counter bumped by triggers on credential changes

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30 09:40:00

The credential cache (services/clients.py) keeps authenticated callers in memory
and uses an entry only while credential_changes.generation is the one it was read
under. Triggers bump the generation inside every transaction that inserts, deletes
or updates a secret (except its last_used_at bookkeeping), a client or a resource
server, so no change can slip past the cache, whoever makes it.

Note for later migrations: SQLite batch mode recreates a table it alters, which drops
its triggers; a batch migration of credential_secrets, oauth2_clients or
resource_servers must call create_triggers() of this module again
(tests/http/test_credential_cache.py checks that all three exist at head).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

BUMP = (
    "INSERT INTO credential_changes (id, generation) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET generation = credential_changes.generation + 1"
)
# Which changes count; last_used_at is written once a minute while a secret is used
# and must not empty every worker's cache each time.
WATCHED = {
    "credential_secrets": "UPDATE OF oauth_client_id, resource_server_id, secret_hash, "
    "created_at, expires_at",
    "oauth2_clients": "UPDATE",
    "resource_servers": "UPDATE",
}


def create_triggers(table):
    """Create the change triggers of one table (also after a batch rebuild of it)."""
    update = WATCHED[table]
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER credential_changes_bump AFTER INSERT OR DELETE OR {update} "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION credential_changes_bump()"
        )
        return
    for name, when in (("insert", "INSERT"), ("delete", "DELETE"), ("update", update)):
        op.execute(
            f"CREATE TRIGGER credential_changes_{table}_{name} AFTER {when} ON {table} "
            f"BEGIN {BUMP}; END"
        )


def drop_triggers(table):
    """Drop the change triggers of one table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS credential_changes_bump ON {table}")
        return
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS credential_changes_{table}_{name}")


def upgrade():
    op.create_table(
        "credential_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_changes")),
    )
    op.execute("INSERT INTO credential_changes (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION credential_changes_bump() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
    for table in WATCHED:
        create_triggers(table)


def downgrade():
    for table in WATCHED:
        drop_triggers(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS credential_changes_bump()")
    op.drop_table("credential_changes")
