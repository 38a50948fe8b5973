"""authorization_codes.redirect_uri optional

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-27 10:00:00

RFC 6749 §4.1.3: a code whose authorization request named no redirect_uri is
redeemed without one, so the code stores NULL instead of the client's default URI.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.alter_column("redirect_uri", existing_type=sa.Text(), nullable=True)


def downgrade():
    # The older schema cannot say "none named"; an empty string keeps such codes
    # redeemable without redirect_uri there too (Authlib compares only a non-empty one).
    op.execute("UPDATE authorization_codes SET redirect_uri = '' WHERE redirect_uri IS NULL")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.alter_column("redirect_uri", existing_type=sa.Text(), nullable=False)
