"""authorization_codes.redirect_uri optional; user_sessions

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-27 10:00:00

RFC 6749 §4.1.3: a code whose authorization request named no redirect_uri is
redeemed without one, so the code stores NULL instead of the client's default URI.

user_sessions keeps each browser login on the server (the hash of the id its cookie
carries), so logging out ends that login even for a copy of the cookie.
"""

import sqlalchemy as sa
from alembic import op

import authserver.database

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.alter_column("redirect_uri", existing_type=sa.Text(), nullable=True)

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", authserver.database.UTCDateTime(), nullable=False),
        sa.Column("expires_at", authserver.database.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_user_sessions_session_hash")),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sessions_user_id"))
    op.drop_table("user_sessions")

    # The older schema cannot say "none named"; an empty string keeps such codes
    # redeemable without redirect_uri there too (Authlib compares only a non-empty one).
    op.execute("UPDATE authorization_codes SET redirect_uri = '' WHERE redirect_uri IS NULL")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.alter_column("redirect_uri", existing_type=sa.Text(), nullable=False)
