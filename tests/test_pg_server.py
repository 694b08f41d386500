"""The suite's own PostgreSQL cluster (tests/pg.py) is real and usable."""

from __future__ import annotations

import pg


def test_cluster_serves_loopback_and_isolates_schemas(pg_server: pg.Cluster) -> None:
    import psycopg

    a, b = pg_server.fresh_url(), pg_server.fresh_url()
    with psycopg.connect(a, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema(), inet_server_addr()::text").fetchone()
        assert row is not None
        schema_a, addr = row
        assert str(addr).startswith("127.0.0.1")
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    with psycopg.connect(b, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None and row[0] != schema_a
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
