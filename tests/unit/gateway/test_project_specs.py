"""Issue 16 items 3 and 4 at the API: unknown train.args keys 422 with a suggestion,
project names unique per owner (409 on create and rename), clone, and spec validation
with paths and a diff against the latest run's spec."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.unit.gateway.conftest import SPEC, Harness


async def _create(h: Harness, headers: dict[str, str], name: str, **spec: Any) -> Any:
    return await h.client.post(
        "/api/projects", json={"name": name, "spec": {**SPEC, **spec}}, headers=headers
    )


async def test_unknown_train_arg_is_refused_with_the_nearest_name(harness: Harness) -> None:
    _, owner = harness.login()
    r = await _create(harness, owner, "typo", train={"args": {"max_step": 40}})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "train.args.max_step" in message and "did you mean max_steps?" in message
    # nothing was created
    assert (await harness.client.get("/api/projects", headers=owner)).json() == []


async def test_names_are_unique_per_owner(harness: Harness) -> None:
    _, alice = harness.login("alice@example.com")
    _, bob = harness.login("bob@example.com")
    first = await _create(harness, alice, "sentiment")
    assert first.status_code == 201
    again = await _create(harness, alice, "sentiment")
    assert again.status_code == 409 and "already have a project named" in again.text
    assert (await _create(harness, bob, "sentiment")).status_code == 201  # another owner
    other = (await _create(harness, alice, "other")).json()
    r = await harness.client.patch(
        f"/api/projects/{other['id']}", json={"name": "sentiment"}, headers=alice
    )
    assert r.status_code == 409
    r = await harness.client.patch(
        f"/api/projects/{other['id']}", json={"name": "other"}, headers=alice
    )
    assert r.status_code == 200  # keeping its own name is no conflict
    names = sorted(
        p["name"] for p in (await harness.client.get("/api/projects", headers=alice)).json()
    )
    assert names == ["other", "sentiment"]


async def test_clone(harness: Harness) -> None:
    _, alice = harness.login("alice@example.com")
    source = (await _create(harness, alice, "base", train={"args": {"epochs": 2}})).json()
    r = await harness.client.post(
        f"/api/projects/{source['id']}/clone", json={"name": "base-copy"}, headers=alice
    )
    assert r.status_code == 201, r.text
    clone = r.json()
    assert clone["id"] != source["id"] and clone["name"] == "base-copy"
    assert clone["spec"] == source["spec"] and clone["role"] == "owner"
    assert clone["current_run_id"] and clone["status"] == "queued"
    r = await harness.client.post(
        f"/api/projects/{source['id']}/clone", json={"name": "base"}, headers=alice
    )
    assert r.status_code == 409
    # a stranger cannot clone what they cannot see
    _, mallory = harness.login("mallory@example.com")
    r = await harness.client.post(
        f"/api/projects/{source['id']}/clone", json={"name": "mine"}, headers=mallory
    )
    assert r.status_code == 404
    # a viewer clones into a project of their own, with an edited spec
    await harness.add_member(source["id"], alice, "vic@example.com", "viewer")
    _, vic = harness.login("vic@example.com")
    r = await harness.client.post(
        f"/api/projects/{source['id']}/clone",
        json={"name": "vics", "spec": {**SPEC, "train": {"args": {"epochs": 5}}}},
        headers=vic,
    )
    assert r.status_code == 201 and r.json()["spec"]["train"]["args"] == {"epochs": 5}


async def test_validate_reports_errors_with_paths(harness: Harness) -> None:
    _, alice = harness.login()
    url = "/api/specs/validate"
    text = (
        "name: demo\nmodel: hf://org/m@main\ndataset: hf://datasets/org/d@main\n"
        "train:\n  args: {max_step: 4}\nresources:\n  nodes: 0\n  gpus: 2\n"
    )
    r = await harness.client.post(url, json={"yaml": text}, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is False and body["spec"] is None
    paths = {e["path"]: e["message"] for e in body["errors"]}
    assert "resources.nodes" in paths and paths["resources.gpus"] == "unknown field"

    r = await harness.client.post(
        url, json={"yaml": text.replace("  nodes: 0\n  gpus: 2\n", "  nodes: 1\n")}, headers=alice
    )
    errors = r.json()["errors"]
    assert errors == [
        {
            "path": "train.args.max_step",
            "message": "unknown key for task text-classification; did you mean max_steps?",
            "line": None,
        }
    ]

    r = await harness.client.post(url, json={"yaml": "name: [unclosed\n"}, headers=alice)
    (error,) = r.json()["errors"]
    assert error["line"] == 2 and error["message"].startswith("YAML:")

    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    r = await harness.client.post(url, json={"yaml": bomb}, headers=alice)
    assert r.json()["errors"] == [
        {"path": "", "message": "YAML: aliases are not allowed", "line": 2}
    ]

    r = await harness.client.post(url, json={"yaml": "- a list\n"}, headers=alice)
    assert r.json()["errors"][0]["message"].startswith("a spec is a mapping")

    assert (await harness.client.post(url, json={}, headers=alice)).status_code == 422


async def test_validate_diffs_against_the_latest_run(harness: Harness) -> None:
    _, alice = harness.login("alice@example.com")
    project = (await _create(harness, alice, "d", train={"args": {"epochs": 1}})).json()
    edited = {**SPEC, "train": {"args": {"epochs": 3}}}
    r = await harness.client.post(
        "/api/specs/validate", json={"spec": edited, "project_id": project["id"]}, headers=alice
    )
    body = r.json()
    assert body["valid"] and body["spec"]["train"]["args"] == {"epochs": 3}
    assert "-    epochs: 1" in body["diff"] and "+    epochs: 3" in body["diff"]
    _, mallory = harness.login("mallory@example.com")
    r = await harness.client.post(
        "/api/specs/validate", json={"spec": edited, "project_id": project["id"]}, headers=mallory
    )
    assert r.status_code == 404


async def test_a_run_keeps_the_spec_it_ran_with(harness: Harness) -> None:
    _, alice = harness.login("alice@example.com")
    project = (await _create(harness, alice, "snap", train={"args": {"epochs": 1}})).json()
    run_id = project["current_run_id"]
    r = await harness.client.patch(
        f"/api/projects/{project['id']}",
        json={"spec": {**SPEC, "train": {"args": {"epochs": 9}}}},
        headers=alice,
    )
    assert r.status_code == 200
    r = await harness.client.get(f"/api/runs/{run_id}/spec", headers=alice)
    assert r.status_code == 200
    assert r.json()["number"] == 1 and r.json()["spec"]["train"]["args"] == {"epochs": 1}
    _, mallory = harness.login("mallory@example.com")
    r = await harness.client.get(f"/api/runs/{run_id}/spec", headers=mallory)
    assert r.status_code == 404


def test_migration_renames_duplicate_names_then_makes_them_unique(tmp_path: Path) -> None:
    """gateway_0004 on a database that already holds two projects of one owner with one
    name: the older keeps it, the newer becomes name-2 (name-2 taken: name-3)."""
    from alembic import command

    from services.gateway.main import MIGRATIONS
    from shared.db import Database
    from shared.db.migrate import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    config = alembic_config(MIGRATIONS, version_table="alembic_version_gateway")
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "gateway_0003")
    owner, other = uuid.uuid4(), uuid.uuid4()
    rows = [
        (owner, "demo", "2026-01-01"),
        (owner, "demo", "2026-01-02"),
        (owner, "demo-2", "2026-01-03"),
        (owner, "demo", "2026-01-04"),
        (other, "demo", "2026-01-05"),
    ]
    with db.engine.begin() as conn:
        for who, name, at in rows:
            conn.execute(
                text(
                    "INSERT INTO gateway_projects (id, name, spec, owner_id, run_count, last_seq,"
                    " created_at, updated_at) VALUES (:id, :name, '{}', :owner, 0, 0, :at, :at)"
                ),
                {"id": uuid.uuid4().hex, "name": name, "owner": who.hex, "at": at},
            )
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with db.engine.connect() as conn:
        names = conn.execute(
            text("SELECT owner_id, name FROM gateway_projects ORDER BY created_at")
        ).all()
        assert [n for _, n in names] == ["demo", "demo-3", "demo-2", "demo-4", "demo"]
        with pytest.raises(IntegrityError):
            conn.execute(
                text(
                    "INSERT INTO gateway_projects (id, name, spec, owner_id, run_count, last_seq,"
                    " created_at, updated_at) VALUES (:id, 'demo', '{}', :owner, 0, 0, :at, :at)"
                ),
                {"id": uuid.uuid4().hex, "owner": owner.hex, "at": "2026-02-01"},
            )
    db.dispose()
