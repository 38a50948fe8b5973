"""audit_events: address and count, so failed-authentication floods are one row a minute

Revision ID: 0008
Revises: 0010
Create Date: 2026-11-30 14:40:00

A flood of failed logins or client authentications is recorded as one row per
address, claimed id and minute, whose count grows (services/audit.py). The
append-only trigger of 0002 is replaced by two narrower ones: no column but
``count`` may be updated, and ``count`` may only grow. The columns are added with
plain ALTER TABLE (no batch mode), so SQLite keeps the table and its triggers.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0010"
branch_labels = None
depends_on = None

MESSAGE = "audit_events is append-only"
# Every column but count: updating any of them is refused.
FIXED = "id, created_at, event_type, actor, client_id, username, details, address"


def upgrade():
    op.add_column("audit_events", sa.Column("address", sa.String(length=45), nullable=True))
    op.add_column(
        "audit_events",
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    _drop_append_only()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_events_forbid_update() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MESSAGE}'; "
            "END $$"
        )
        op.execute(
            f"CREATE TRIGGER audit_events_no_update BEFORE UPDATE OF {FIXED} ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_forbid_update()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_count_grows BEFORE UPDATE OF count ON audit_events "
            "FOR EACH ROW WHEN (NEW.count < OLD.count) "
            "EXECUTE FUNCTION audit_events_forbid_update()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER audit_events_no_update BEFORE UPDATE OF {FIXED} ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_events_count_grows BEFORE UPDATE OF count ON audit_events "
            f"WHEN NEW.count < OLD.count BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def downgrade():
    _drop_append_only()
    op.drop_column("audit_events", "count")
    op.drop_column("audit_events", "address")
    # 0002's trigger: no update at all.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_events_forbid_update() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{MESSAGE}'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_forbid_update()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def _drop_append_only():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_count_grows ON audit_events")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_count_grows")
