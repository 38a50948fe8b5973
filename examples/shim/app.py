"""An IFTTT service on the kit (authserver.shim): notes by topic.

A trigger with a field (new note in a topic), an action (create a note, which tells
IFTTT's Realtime API to poll), a query (list notes), field options and validation,
trigger identities in a SQLAlchemy store. Run it (see README.md in this folder)::

    AUTHSERVER_URL=https://auth.example.com SHIM_SERVER_ID=rs_... SHIM_SERVER_SECRET=... \
    IFTTT_SERVICE_KEY=production-key,staging-key PORT=8080 python examples/shim/app.py
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask
from sqlalchemy import Column
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import create_engine
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select

from authserver.shim import IftttService
from authserver.shim import ShimUser
from authserver.shim import Skip
from authserver.shim import SQLAlchemyStore

TOPICS = ["news", "sports", "work"]
metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", String(255), index=True, nullable=False),
    Column("topic", String(40), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created", Integer, nullable=False),  # Unix seconds
)


def create_app(
    *,
    authserver_url: str,
    server_id: str,
    server_secret: str,
    service_keys: list[str],
    database_url: str = "sqlite:///example-shim.db",
    realtime_url: str | None = None,
) -> Flask:
    """Build the shim: the service's functions, registered on the kit."""
    engine = create_engine(database_url)
    store = SQLAlchemyStore(engine, metadata=metadata)
    metadata.create_all(engine)
    service = IftttService(
        authserver_url=authserver_url,
        server_id=server_id,
        server_secret=server_secret,
        service_keys=service_keys,
        store=store,
        realtime_url=realtime_url,
    )

    def add_note(user_id: str, topic: str, title: str) -> int:
        with engine.begin() as db:
            values = {"user_id": user_id, "topic": topic, "title": title}
            result = db.execute(insert(notes).values(created=int(time.time()), **values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    # The trigger and the action: all the code an IFTTT service needs for them.
    @service.trigger("new_note", fields=["topic"])
    def new_note(user: ShimUser, fields: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        query = (
            select(notes)
            .where(notes.c.user_id == user.sub, notes.c.topic == fields["topic"])
            .order_by(notes.c.id.desc())
            .limit(limit)
        )
        with engine.connect() as db:
            return [
                {"title": row.title, "meta": {"id": str(row.id), "timestamp": row.created}}
                for row in db.execute(query)
            ]

    @service.action("create_note", fields=["title", "topic"])
    def create_note(user: ShimUser, fields: dict[str, Any]) -> int:
        title, topic = str(fields["title"]).strip(), fields["topic"]
        if not title:
            raise Skip("An empty title creates no note.")
        note_id = add_note(user.sub, topic, title)
        # Tell IFTTT to poll now the Applets that wait for this topic (in background).
        waiting = store.find(user_id=user.sub, slug="new_note")
        service.notify_async(
            trigger_identities=[i.trigger_identity for i in waiting if i.fields["topic"] == topic]
        )
        return note_id

    @service.trigger_field_options("new_note", "topic")
    @service.action_field_options("create_note", "topic")
    def topics(user: ShimUser) -> list[str]:
        return TOPICS

    @service.trigger_field_validation("new_note", "topic")
    def valid_topic(user: ShimUser, value: Any) -> bool | str:
        return value in TOPICS or f"Pick one of {', '.join(TOPICS)}."

    @service.query("list_notes", fields=["topic"])
    def list_notes(
        user: ShimUser, fields: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(notes).where(notes.c.user_id == user.sub, notes.c.topic == fields["topic"])
        if cursor and cursor.isdigit():
            query = query.where(notes.c.id < int(cursor))
        with engine.connect() as db:
            rows = db.execute(query.order_by(notes.c.id.desc()).limit(limit + 1)).all()
        items = [{"id": str(row.id), "title": row.title} for row in rows[:limit]]
        return items, (items[-1]["id"] if len(rows) > limit and items else None)

    @service.test_setup
    def samples(user: ShimUser) -> dict[str, Any]:
        # IFTTT's tests expect three events for the sample trigger fields.
        with engine.connect() as db:
            count = db.scalar(
                select(func.count()).where(notes.c.user_id == user.sub, notes.c.topic == "news")
            )
        for n in range(int(count or 0), 3):
            add_note(user.sub, "news", f"Sample note {n + 1}")
        return {
            "triggers": {"new_note": {"topic": "news"}},
            "triggerFieldValidations": {"new_note": {"topic": {"valid": "news", "invalid": "x"}}},
            "actions": {"create_note": {"title": "Hello from IFTTT", "topic": "news"}},
            "actionRecordSkipping": {"create_note": {"title": "", "topic": "news"}},
            "queries": {"list_notes": {"topic": "news"}},
        }

    app = Flask(__name__)
    service.init_app(app)
    app.extensions["ifttt_service"] = service
    return app


def main() -> None:
    """Run the shim with settings from the environment (development server)."""
    app = create_app(
        authserver_url=os.environ["AUTHSERVER_URL"],
        server_id=os.environ["SHIM_SERVER_ID"],
        server_secret=os.environ["SHIM_SERVER_SECRET"],
        service_keys=[key.strip() for key in os.environ["IFTTT_SERVICE_KEY"].split(",")],
        database_url=os.environ.get("SHIM_DATABASE_URL", "sqlite:///example-shim.db"),
    )
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
