"""s3:// and database dataset specs (issue 18 item 2): malformed ones are 422 naming the
field, well-formed ones are accepted and kept as given; a password in a database URI is
refused without being echoed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.gateway.conftest import SPEC, Harness

PG = "postgresql://reader@db.example.com:5432/sales"


@pytest.mark.parametrize(
    ("dataset", "says"),
    [
        ("s3://Not_A_Bucket/x", "bucket name"),
        ("s3://bucket-1/../etc", "'..' segments"),
        ({"uri": "s3://bucket-1/x", "endpoint": "ftp://store.example.com"}, "https://"),
        ({"uri": "s3://bucket-1/x", "endpoint": "https://u:p@store.example.com"}, "user info"),
        ({"uri": "s3://bucket-1/x", "query": "SELECT 1"}, "postgresql:// and mysql://"),
        (PG, "exactly one of dataset.query or dataset.table"),
        ({"uri": PG, "query": "SELECT 1", "table": "t"}, "exactly one"),
        ({"uri": PG, "table": "t; DROP TABLE t"}, "dataset.table"),
        ({"uri": PG, "table": 'a"b'}, "dataset.table"),
        ({"uri": PG, "query": "   "}, "dataset.query"),
        ({"uri": PG, "table": "t", "endpoint": "https://x.example.com"}, "s3:// sources only"),
        ({"uri": "postgresql://db.example.com/sales?host=/tmp", "table": "t"}, "parameters"),
        ({"uri": "postgresql://-oProxy/sales", "table": "t"}, "hostname or an IP"),
        ({"uri": "mysql://db.example.com/", "table": "t"}, "name the database"),
        ({"uri": PG, "table": "t", "extra": 1}, "extra"),
    ],
)
async def test_malformed_data_source_is_422(harness: Harness, dataset: Any, says: str) -> None:
    _, headers = harness.login()
    spec: dict[str, Any] = {**SPEC, "dataset": dataset}
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": spec}, headers=headers
    )
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "spec.dataset" in message and says.lower() in message.lower(), message


async def test_password_in_database_uri_is_refused_not_echoed(harness: Harness) -> None:
    _, headers = harness.login()
    dataset = {"uri": "postgresql://reader:Sup3rS3cret!@db.example.com/sales", "table": "t"}
    spec: dict[str, Any] = {**SPEC, "dataset": dataset}
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": spec}, headers=headers
    )
    assert r.status_code == 422 and "DB_PASSWORD" in r.text, r.text
    assert "Sup3rS3cret" not in r.text


@pytest.mark.parametrize(
    "dataset",
    [
        "s3://my-bucket/reviews/",
        {
            "uri": "s3://my-bucket",
            "endpoint": "https://minio.example.com:9000",
            "region": "eu-west-1",
        },
        {"uri": PG, "query": "SELECT text, label FROM reviews ORDER BY id"},
        {"uri": "mysql://db.example.com/sales", "table": "shop.reviews"},
    ],
)
async def test_data_source_specs_accepted(harness: Harness, dataset: Any) -> None:
    _, headers = harness.login()
    spec: dict[str, Any] = {**SPEC, "dataset": dataset}
    r = await harness.client.post(
        "/api/projects", json={"name": "p", "spec": spec}, headers=headers
    )
    assert r.status_code == 201, r.text
    got = r.json()["spec"]["dataset"]
    if isinstance(dataset, str):
        assert got == dataset
    else:
        assert {k: v for k, v in got.items() if v is not None} == dataset
