"""oauth2_clients: refresh policy per client (profile and overrides)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 14:00:00

Issue 15: each client carries a refresh profile (ifttt, google, alexa, strict) and
optional overrides of it. Clients that exist before this revision get the profile
"ifttt", which is the server-wide behaviour they had; new clients default by type.

The columns are added with plain ALTER TABLE ADD COLUMN (no batch rebuild), so
SQLite keeps the credential_changes triggers of migration 0007 on oauth2_clients.
The downgrade's batch rebuild drops them, and it creates them again.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def columns():
    """Return new Column objects (a Column belongs to one table once used)."""
    return [
        sa.Column("refresh_profile", sa.String(length=16), nullable=True),
        sa.Column("refresh_rotation", sa.Boolean(), nullable=True),
        sa.Column("refresh_grace_until_used", sa.Boolean(), nullable=True),
        sa.Column("refresh_reuse_revokes_family", sa.Boolean(), nullable=True),
    ]


def _credential_triggers():
    """Load migration 0007's trigger helpers (versions/ is not a package)."""
    path = Path(__file__).with_name("0007_credential_changes.py")
    spec = importlib.util.spec_from_file_location("_migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade():
    for column in columns():
        op.add_column("oauth2_clients", column)
    op.execute("UPDATE oauth2_clients SET refresh_profile = 'ifttt'")


def downgrade():
    with op.batch_alter_table("oauth2_clients", schema=None) as batch_op:
        for column in reversed(columns()):
            batch_op.drop_column(column.name)
    if op.get_bind().dialect.name == "sqlite":
        # The batch rebuild dropped the table's triggers; the cache depends on them.
        triggers = _credential_triggers()
        triggers.drop_triggers("oauth2_clients")
        triggers.create_triggers("oauth2_clients")
