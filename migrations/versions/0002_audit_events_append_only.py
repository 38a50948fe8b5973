"""audit_events append-only: a trigger refuses UPDATE

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:10:00

The audit trail must not be rewritten after the fact, so the database itself refuses
UPDATE on audit_events (SQLite and PostgreSQL). DELETE stays possible: retention
and test clean-up remove old rows.

Note for later migrations: SQLite batch mode recreates a table it alters, which drops
its triggers; a batch migration of audit_events must create this trigger again.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MESSAGE = "audit_events is append-only"


def upgrade():
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


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_forbid_update()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
