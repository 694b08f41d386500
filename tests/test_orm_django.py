"""Django recipe (docs/orm.md): the ``connection_created`` signal attaches honker to every
SQLite connection Django opens (``apps.djshop``); ``transaction.atomic()`` covers the
enqueue, so the order and the job commit together or not at all; a worker process wakes on
the commit. Django runs standalone here (``settings.configure``, a file database)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

import honker
from helpers import CLAIM_ONE_WORKER, Child

django = pytest.importorskip("django")


@pytest.fixture(scope="module")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from django.conf import settings

    if settings.configured:
        pytest.skip("Django is already configured in this process")
    path = str(tmp_path_factory.mktemp("django") / "app.db")
    settings.configure(
        INSTALLED_APPS=["apps.djshop.apps.ShopConfig"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": path,
                # BEGIN IMMEDIATE for atomic(): no read-to-write lock upgrade while
                # honker workers commit to the same file.
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 5},
            }
        },
        USE_TZ=True,
    )
    django.setup()
    from apps.djshop.models import Order
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.create_model(Order)
    yield path
    connection.close()


@pytest.fixture
def shop(django_db: str) -> Iterator[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM djshop_order")
        cursor.execute("DELETE FROM _honker_live")
    yield django_db


def _state(path: str) -> tuple[list[int], list[Any]]:
    """What another connection sees (committed data only)."""
    conn = sqlite3.connect(path)
    try:
        totals = [r[0] for r in conn.execute("SELECT total FROM djshop_order ORDER BY id")]
        payloads = [json.loads(r[0]) for r in conn.execute("SELECT payload FROM _honker_live")]
        return totals, payloads
    finally:
        conn.close()


def test_signal_attached_honker_to_djangos_connection(shop: str) -> None:
    from django.db import connection

    connection.close()  # a new connection: the signal attaches again
    with connection.cursor() as cursor:
        cursor.execute("SELECT honker_cron_next_after(%s, %s)", ["@every 5s", 0])
        assert cursor.fetchone() == (5,)
    tables = {r[0] for r in sqlite3.connect(shop).execute("SELECT name FROM sqlite_master")}
    assert {"_honker_live", "_honker_notifications", "_honker_stats"} <= tables


def test_atomic_commits_order_and_job_together(shop: str) -> None:
    from apps.djshop.jobs import enqueue
    from apps.djshop.models import Order
    from django.db import transaction

    with transaction.atomic():
        order = Order.objects.create(total=9900)
        job_id = enqueue("emails", {"order_id": order.pk})
        assert _state(shop) == ([], [])  # nothing visible before the commit
    assert _state(shop) == ([9900], [{"order_id": order.pk}])
    db = honker.open(shop)
    job = db.queue("emails").claim_one("w")
    assert job is not None and job.id == job_id
    db.close()


def test_atomic_rolls_back_order_and_job_together(shop: str) -> None:
    from apps.djshop.jobs import enqueue
    from apps.djshop.models import Order
    from django.db import transaction

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        Order.objects.create(total=1)
        enqueue("emails", {"n": 1})
        raise Boom
    with transaction.atomic():
        enqueue("emails", {"n": 2})  # the job first, then the order
        with pytest.raises(Boom), transaction.atomic():  # a savepoint inside
            enqueue("emails", {"n": "inner, rolled back"})
            raise Boom
        Order.objects.create(total=2)
    assert _state(shop) == ([2], [{"n": 2}])


def test_outside_atomic_the_enqueue_autocommits(shop: str) -> None:
    from apps.djshop.jobs import enqueue

    enqueue("emails", {"n": "now"})
    assert _state(shop) == ([], [{"n": "now"}])


def test_worker_process_wakes_on_atomic_commit(shop: str, children: list[Child]) -> None:
    from apps.djshop.jobs import enqueue
    from apps.djshop.models import Order
    from django.db import transaction

    worker = Child(CLAIM_ONE_WORKER, shop, "emails")
    children.append(worker)
    worker.expect("READY")
    with transaction.atomic():
        order = Order.objects.create(total=5)
        enqueue("emails", {"order_id": order.pk})
    assert json.loads(worker.readline(timeout=30)) == {"order_id": order.pk}
    assert worker.wait() == 0
    assert _state(shop) == ([5], [])
