"""postgresql:// and mysql:// dataset sources (issue 18 item 2) through the fetcher service,
against the PostgreSQL (a fresh database per test) and MariaDB the suite runs.

A query's result is stored as one Parquet file with the right rows and types, its revision
is stable while the data is and changes with it, a table works as well; the query runs
read-only (a write, a second statement are refused and change nothing); a wrong password
fails clearly and appears nowhere; a loopback host is refused without the allow-list.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow.parquet as pq
import pytest

from shared.events import ArtifactsCached, ArtifactsFailed, parse_payload
from tests.support.hf_server import HubServer
from tests.unit.fetcher.harness import running_fetcher

pytestmark = pytest.mark.integration

OWNER = "6d1f7a6e-0000-4000-8000-0000000db5a1"
ALLOW = {"fetch_allow_hosts": ["127.0.0.1"]}


def _body(hub: HubServer, dataset: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    return {
        "name": "t",
        "model": "hf://org/tiny",
        "dataset": dataset,
        "task": "text-classification",
        "secrets": secrets,
    }


def _rows(f: Any, ref: Any) -> tuple[list[dict[str, Any]], Any]:
    files = f.cache.store.get_manifest(ref.cache_key).files
    assert [x.path for x in files] == ["data.parquet"]
    table = pq.read_table(io.BytesIO(b"".join(f.cache.store.read(files[0].digest))))
    return table.to_pylist(), table.schema


@pytest.fixture
def hub() -> Any:
    with HubServer() as server:
        server.commit("org/tiny", {"config.json": b"{}"})
        server_url = server.url
        assert server_url
        yield server


async def test_postgres_query_to_parquet_read_only(
    tmp_path: Path, postgres_url: str, hub: HubServer
) -> None:
    parts = urlsplit(postgres_url)
    dsn = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute(
            "CREATE TABLE shop.reviews (id int PRIMARY KEY, text text, label int, "
            "score numeric(4,2), ok boolean, at timestamptz, meta jsonb)"
        )
        conn.execute(
            "INSERT INTO shop.reviews VALUES "
            "(1, 'good', 1, 4.50, true, '2026-01-02T03:04:05Z', '{\"a\": 1}'), "
            "(2, 'bad', 0, 1.25, false, NULL, NULL), (3, 'meh', 0, NULL, NULL, NULL, '[]')"
        )
    uri = f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"
    query = {
        "uri": uri,
        "query": "SELECT id, text, label, score, ok, at, meta FROM shop.reviews ORDER BY id",
    }
    async with running_fetcher(tmp_path, hf_endpoint=hub.url, **ALLOW) as f:
        f.vault.put_user_secret(OWNER, "DB_PASSWORD", parts.password or "")
        first_run = await f.start_run(_body(hub, query, ["DB_PASSWORD"]), owner=OWNER)
        first = parse_payload(await f.outcome(first_run))
        assert isinstance(first, ArtifactsCached), first
        ref = first.artifacts[1]
        assert ref.kind == "dataset" and ref.source.startswith(
            f"postgresql://{parts.hostname}:{parts.port}{parts.path}?query="
        )
        rows, schema = _rows(f, ref)
        assert rows == [
            {
                "id": 1,
                "text": "good",
                "label": 1,
                "score": 4.5,
                "ok": True,
                "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                "meta": '{"a": 1}',
            },
            {
                "id": 2,
                "text": "bad",
                "label": 0,
                "score": 1.25,
                "ok": False,
                "at": None,
                "meta": None,
            },
            {
                "id": 3,
                "text": "meh",
                "label": 0,
                "score": None,
                "ok": None,
                "at": None,
                "meta": "[]",
            },
        ]
        assert (
            str(schema.field("id").type) == "int64" and str(schema.field("score").type) == "double"
        )
        assert any(
            e.run_id == first_run and e.type == "FetchProgress" for e in f.events
        )  # bytes of the export as it is written

        again = parse_payload(await f.fetch(_body(hub, query, ["DB_PASSWORD"]), owner=OWNER))
        assert again.artifacts[1].resolved_revision == ref.resolved_revision  # type: ignore[attr-defined]
        assert again.artifacts[1].cache_key == ref.cache_key  # type: ignore[attr-defined]

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE shop.reviews SET label = 1 WHERE id = 3")
        changed = parse_payload(await f.fetch(_body(hub, query, ["DB_PASSWORD"]), owner=OWNER))
        assert changed.artifacts[1].resolved_revision != ref.resolved_revision  # type: ignore[attr-defined]

        table = {"uri": uri, "table": "shop.reviews"}
        whole = parse_payload(await f.fetch(_body(hub, table, ["DB_PASSWORD"]), owner=OWNER))
        assert isinstance(whole, ArtifactsCached), whole
        assert whole.artifacts[1].source.endswith("?table=shop.reviews")
        assert sorted(r["id"] for r in _rows(f, whole.artifacts[1])[0]) == [1, 2, 3]

        for sql in (
            "DELETE FROM shop.reviews RETURNING id",
            "SELECT 1; DELETE FROM shop.reviews",
            "WITH gone AS (DELETE FROM shop.reviews RETURNING id) SELECT * FROM gone",
            "SELECT nope FROM shop.reviews",
        ):
            bad = parse_payload(
                await f.fetch(_body(hub, {"uri": uri, "query": sql}, ["DB_PASSWORD"]), owner=OWNER)
            )
            assert isinstance(bad, ArtifactsFailed) and not bad.retryable, (sql, bad)
            assert bad.reason.startswith(f"The query on postgresql://{parts.hostname}")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM shop.reviews").fetchone() == (3,)

        # the suite's PostgreSQL trusts loopback connections (any password passes), so the
        # credentials the server refuses here are a role it does not know
        f.vault.put_user_secret(OWNER, "DB_USER", "no_such_role_42")
        f.vault.put_user_secret(OWNER, "DB_PASSWORD", "not-the-password-42")
        wrong = ["DB_USER", "DB_PASSWORD"]
        denied = parse_payload(await f.fetch(_body(hub, query, wrong), owner=OWNER))
        assert isinstance(denied, ArtifactsFailed) and not denied.retryable
        assert "Could not log in" in denied.reason and "DB_PASSWORD" in denied.reason
        dumped = "".join(e.model_dump_json() for e in f.events)
        assert "not-the-password-42" not in dumped
        assert f":{parts.password}@" not in dumped

    (tmp_path / "slow").mkdir()
    async with running_fetcher(
        tmp_path / "slow", hf_endpoint=hub.url, db_statement_timeout=1.5, **ALLOW
    ) as f:
        f.vault.put_user_secret(OWNER, "DB_PASSWORD", parts.password or "")
        sleepy = {"uri": uri, "query": "SELECT pg_sleep(30) AS z"}
        slow = parse_payload(await f.fetch(_body(hub, sleepy, ["DB_PASSWORD"]), owner=OWNER))
        assert isinstance(slow, ArtifactsFailed) and "AIDP_DB_STATEMENT_TIMEOUT" in slow.reason

    (tmp_path / "strict").mkdir()
    async with running_fetcher(tmp_path / "strict", hf_endpoint=hub.url) as f:
        f.vault.put_user_secret(OWNER, "DB_PASSWORD", parts.password or "")
        refused = parse_payload(await f.fetch(_body(hub, query, ["DB_PASSWORD"]), owner=OWNER))
        assert isinstance(refused, ArtifactsFailed)
        assert "internal address 127.0.0.1" in refused.reason


async def test_mysql_table_to_parquet(tmp_path: Path, hub: HubServer) -> None:
    import pymysql

    name = f"t_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test")
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {name} (id INT PRIMARY KEY, text VARCHAR(20), "
                "price DECIMAL(6,2), raw BLOB, day DATE)"
            )
            cur.execute(
                f"INSERT INTO {name} VALUES (1, 'a', 1.50, x'00ff', '2026-03-04'), "
                "(2, 'b', NULL, NULL, NULL)"
            )
        conn.commit()
        uri = "mysql://root@127.0.0.1:3306/test"
        async with running_fetcher(tmp_path, hf_endpoint=hub.url, **ALLOW) as f:
            table = {"uri": uri, "table": name}
            done = parse_payload(await f.fetch(_body(hub, table, []), owner=OWNER))
            assert isinstance(done, ArtifactsCached), done
            rows, _ = _rows(f, done.artifacts[1])
            assert rows == [
                {
                    "id": 1,
                    "text": "a",
                    "price": 1.5,
                    "raw": b"\x00\xff",
                    "day": dt.date(2026, 3, 4),
                },
                {"id": 2, "text": "b", "price": None, "raw": None, "day": None},
            ]
            write = {"uri": uri, "query": f"DELETE FROM {name}"}
            bad = parse_payload(await f.fetch(_body(hub, write, []), owner=OWNER))
            assert isinstance(bad, ArtifactsFailed) and "read" in bad.reason.lower(), bad
            two = {"uri": uri, "query": f"SELECT 1; DELETE FROM {name}"}
            bad = parse_payload(await f.fetch(_body(hub, two, []), owner=OWNER))
            assert isinstance(bad, ArtifactsFailed), bad
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {name}")
            assert cur.fetchone() == (2,)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()
