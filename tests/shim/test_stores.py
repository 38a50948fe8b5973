"""Trigger-identity stores: in memory, and SQLAlchemy on the shim's own engine."""

from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy import create_engine
from sqlalchemy import inspect

from authserver.shim import MemoryStore
from authserver.shim import SQLAlchemyStore
from authserver.shim import TriggerIdentity
from tests.shim.conftest import TRIGGER_PATH
from tests.shim.conftest import bearer
from tests.shim.conftest import shim_client

MOMENT = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def engine(database_url):
    # The shim's own engine: here the test database, in a table of the kit's own.
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


@pytest.fixture(params=["memory", "sqlalchemy"])
def store(request, engine):
    if request.param == "memory":
        yield MemoryStore()
        return
    store = SQLAlchemyStore(engine, table_name="kit_test_identities")
    yield store
    store.table.drop(engine)


def test_store_remembers_updates_finds_and_forgets(store):
    first = TriggerIdentity("a" * 40, "new_thing", "user-1", {"topic": "news"}, MOMENT)
    store.remember(first)
    store.remember(TriggerIdentity("b" * 40, "other", "user-1", {}, MOMENT))
    store.remember(TriggerIdentity("c" * 40, "new_thing", "user-2", {}, MOMENT))
    assert store.get("a" * 40) == first
    newer = TriggerIdentity("a" * 40, "new_thing", "user-1", {"topic": "sports"}, MOMENT)
    store.remember(newer)
    assert store.get("a" * 40).fields == {"topic": "sports"}
    assert {i.trigger_identity for i in store.find(user_id="user-1")} == {"a" * 40, "b" * 40}
    assert {i.trigger_identity for i in store.find(slug="new_thing")} == {"a" * 40, "c" * 40}
    assert [i.trigger_identity for i in store.find(user_id="user-2", slug="new_thing")] == [
        "c" * 40
    ]
    assert store.forget("a" * 40) == newer
    assert store.get("a" * 40) is None
    assert store.forget("a" * 40) is None


def test_sqlalchemy_store_creates_its_table_once(engine):
    store = SQLAlchemyStore(engine, table_name="kit_test_identities")
    try:
        assert "kit_test_identities" in inspect(engine).get_table_names()
        SQLAlchemyStore(engine, table_name="kit_test_identities")  # checkfirst: no error
    finally:
        store.table.drop(engine)


def test_service_on_a_sqlalchemy_store_forgets_on_delete(make_service, engine, access_token):
    store = SQLAlchemyStore(engine, table_name="kit_test_identities")
    try:
        service = make_service(store=store)
        service.trigger("new_thing")(
            lambda user, fields, limit: [{"meta": {"id": "1", "timestamp": 1}}]
        )
        shim = shim_client(service)
        body = {"triggerFields": {"topic": "news"}, "trigger_identity": "e" * 40}
        assert shim.post(TRIGGER_PATH, json=body, headers=bearer(access_token)).status_code == 200
        stored = store.get("e" * 40)
        assert stored is not None
        assert stored.fields == {"topic": "news"}
        response = shim.delete(
            TRIGGER_PATH + "/trigger_identity/" + "e" * 40, headers=bearer(access_token)
        )
        assert response.status_code == 200
        assert store.get("e" * 40) is None
    finally:
        store.table.drop(engine)
