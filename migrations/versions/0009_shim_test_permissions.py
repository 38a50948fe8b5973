"""shim_test_permissions: resource servers allowed to mint IFTTT test tokens

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-30 13:30:00

`authserver resource-servers allow-test-tokens` stores here which user and client a
shim's `POST /shim/test-token` mints for, and the one token family every call reuses.
"""

import sqlalchemy as sa
from alembic import op

import authserver.database

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "shim_test_permissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_server_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("oauth_client_id", sa.Integer(), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=True),
        sa.Column("created_at", authserver.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["token_families.id"],
            name=op.f("fk_shim_test_permissions_family_id_token_families"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["oauth_client_id"],
            ["oauth2_clients.id"],
            name=op.f("fk_shim_test_permissions_oauth_client_id_oauth2_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_server_id"],
            ["resource_servers.id"],
            name=op.f("fk_shim_test_permissions_resource_server_id_resource_servers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_shim_test_permissions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shim_test_permissions")),
        sa.UniqueConstraint(
            "resource_server_id", name=op.f("uq_shim_test_permissions_resource_server_id")
        ),
    )
    with op.batch_alter_table("shim_test_permissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shim_test_permissions_family_id"), ["family_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_shim_test_permissions_oauth_client_id"),
            ["oauth_client_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_shim_test_permissions_user_id"), ["user_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("shim_test_permissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shim_test_permissions_user_id"))
        batch_op.drop_index(batch_op.f("ix_shim_test_permissions_oauth_client_id"))
        batch_op.drop_index(batch_op.f("ix_shim_test_permissions_family_id"))
    op.drop_table("shim_test_permissions")
