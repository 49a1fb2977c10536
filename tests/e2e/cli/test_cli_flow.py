"""The CLI against a running platform over real HTTP and WebSocket (docs/design.md §7)."""

from __future__ import annotations

import json
import re
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.cli.conftest import Cli
from tests.e2e.cli.harness import Platform, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

PASSWORD = "e2e-Password-123"


def _register(cli: Cli, email: str) -> None:
    result = cli("register", "--server", cli.server, "--email", email, "--password", PASSWORD)
    assert result.code == 0, result.text
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600


def _spec_file(tmp_path: Path, spec: dict[str, object]) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_full_flow_run_follow_deploy_predict(
    cli_for,
    platform: Platform,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    alice: Cli = cli_for("alice")
    _register(alice, f"alice-{uuid.uuid4().hex[:6]}@example.com")

    spec = _spec_file(tmp_path, tiny_spec("cli-demo"))
    run = alice("run", str(spec), "--follow", timeout=600)
    assert run.code == 0, f"{run.text}\n--- platform log ---\n{platform.log_tail()}"
    for expected in ("provisioning", "training started", "step", "deployed"):
        assert expected in run.out, run.out
    dep_id = re.search(r"aidp predict ([0-9a-f-]{36})", run.out)
    assert dep_id, run.out

    predicted = alice(
        "predict",
        dep_id.group(1),
        "--input",
        "a great lovely film",
        "--input",
        "an awful ugly movie",
        "--json",
    )
    assert predicted.code == 0, predicted.text
    assert len(json.loads(predicted.out)) == 2

    projects = json.loads(alice("projects", "--json").out)
    project = next(p for p in projects if p["name"] == "cli-demo")
    assert project["status"] == "deployed"
    runs = json.loads(alice("runs", "cli-demo", "--json").out)
    assert [r["status"] for r in runs] == ["deployed"]
    run_id = runs[0]["id"]

    status = alice("status", run_id)
    assert status.code == 0 and "deployed" in status.out, status.text
    logs = alice("logs", run_id)
    assert logs.code == 0 and logs.out.strip(), logs.text

    models = json.loads(alice("models", "cli-demo", "--json").out)
    assert len(models) == 1 and models[0]["run_id"] == run_id
    artifacts = json.loads(alice("artifacts", "--json").out)
    assert {a["kind"] for a in artifacts} >= {"model", "dataset"}

    # `aidp run` on an existing name starts a new run of that project; cancel it
    again = alice("run", str(spec), "--json")
    assert again.code == 0, again.text
    run2 = json.loads(again.out)["run_id"]
    assert run2 != run_id
    assert alice("cancel", run2).code == 0
    followed = alice("logs", run2, "-f", timeout=180)
    assert followed.code == 1 and "cancelled" in followed.out, followed.text

    # a second user sees nothing of alice's
    bob: Cli = cli_for("bob")
    _register(bob, f"bob-{uuid.uuid4().hex[:6]}@example.com")
    assert json.loads(bob("projects", "--json").out) == []
    stolen = bob("status", run_id)
    assert stolen.code == 1 and "404" in stolen.text
    assert bob("predict", dep_id.group(1), "--input", "x").code == 1

    # down removes the project
    down = alice("down", "cli-demo", "--yes")
    assert down.code == 0, down.text
    assert all(p["name"] != "cli-demo" for p in json.loads(alice("projects", "--json").out))


def test_failed_run_exits_1_with_reason(cli_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    carol: Cli = cli_for("carol")
    _register(carol, f"carol-{uuid.uuid4().hex[:6]}@example.com")
    spec = tiny_spec("cli-missing-data", deploy=False)
    spec["dataset"] = "hf://datasets/e2e/does-not-exist@main"
    result = carol("run", str(_spec_file(tmp_path, spec)), "--follow", timeout=300)
    assert result.code == 1, result.text
    assert "failed" in result.out and "does-not-exist" in result.out

    # CI style: an API token in AIDP_TOKEN, for REST and the WebSocket stream alike
    created = carol("tokens", "create", "ci")
    token = re.search(r"(aidp_\S+)", created.out)
    assert created.code == 0 and token, created.text
    ci = {"AIDP_TOKEN": token.group(1), "AIDP_SERVER": carol.server}
    stranger: Cli = cli_for("ci-runner")  # no config file at all
    run_id = json.loads(stranger("runs", "--json", env=ci).out)[0]["id"]
    followed = stranger("logs", run_id, "-f", env=ci, timeout=120)
    assert followed.code == 1 and "failed" in followed.out, followed.text


def test_secrets_upload_and_usage_errors(cli_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dave: Cli = cli_for("dave")
    _register(dave, f"dave-{uuid.uuid4().hex[:6]}@example.com")

    assert dave("secrets", "set", "HF_TOKEN", input="hf_supersecretvalue\n").code == 0
    listed = dave("secrets", "list", "--json")
    assert json.loads(listed.out) == ["HF_TOKEN"]
    assert "supersecret" not in listed.text
    assert dave("secrets", "delete", "HF_TOKEN").code == 0
    assert json.loads(dave("secrets", "list", "--json").out) == []

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood film,pos\nbad film,neg\n")
    uploaded = dave("upload", str(data), "--json")
    assert uploaded.code == 0, uploaded.text
    assert json.loads(uploaded.out)["uri"].startswith("upload://")

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: hf://a/b\ndataset: hf://datasets/c/d\ntrain: {epochz: 1}\n")
    invalid = dave("run", str(bad))
    assert invalid.code == 2 and "train.epochz" in invalid.text

    logged_out = cli_for("nobody")("projects")
    assert logged_out.code == 2 and "aidp login" in logged_out.text


def test_members_are_invited_and_join_on_accept(cli_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    erin: Cli = cli_for("erin")
    frank: Cli = cli_for("frank")
    grace: Cli = cli_for("grace")
    frank_email = f"frank-{uuid.uuid4().hex[:6]}@example.com"
    grace_email = f"grace-{uuid.uuid4().hex[:6]}@example.com"
    _register(erin, f"erin-{uuid.uuid4().hex[:6]}@example.com")
    _register(frank, frank_email)
    _register(grace, grace_email)
    spec = _spec_file(tmp_path, tiny_spec("cli-shared", deploy=False, max_steps=4))
    assert erin("run", str(spec), "--json").code == 0

    # adding a member invites: nothing is shared until the invitee accepts
    added = erin("members", "add", "cli-shared", frank_email, "--role", "viewer")
    assert added.code == 0, added.text
    assert f"invited {frank_email}" in added.out and "is now" not in added.out
    assert erin("share", "cli-shared", grace_email).code == 0
    pending = json.loads(erin("members", "list", "cli-shared", "--json").out)
    assert sorted((m["email"], m["status"]) for m in pending if m["status"] == "invited") == [
        (e, "invited") for e in sorted([frank_email, grace_email])
    ]
    assert json.loads(frank("projects", "--json").out) == []
    invitations = json.loads(frank("invitations", "list", "--json").out)
    assert [(i["project_name"], i["role"]) for i in invitations] == [("cli-shared", "viewer")]
    listed = frank("invitations", "list")
    assert listed.code == 0 and "cli-shared" in listed.out, listed.text

    # frank accepts (by project name) and sees the project as a viewer, read-only
    accepted = frank("invitations", "accept", "cli-shared")
    assert accepted.code == 0 and "joined as viewer" in accepted.out, accepted.text
    assert [(p["name"], p["role"]) for p in json.loads(frank("projects", "--json").out)] == [
        ("cli-shared", "viewer")
    ]
    assert json.loads(frank("invitations", "list", "--json").out) == []
    assert frank("members", "add", "cli-shared", grace_email).code == 1  # owners only
    # adding someone who already is a member changes the role at once
    changed = erin("members", "add", "cli-shared", frank_email, "--role", "editor")
    assert changed.code == 0 and f"{frank_email} is now editor of cli-shared" in changed.out
    assert [p["role"] for p in json.loads(frank("projects", "--json").out)] == ["editor"]

    # grace declines (by invitation id): no project, no invitation left
    grace_invitation = json.loads(grace("invitations", "list", "--json").out)[0]["id"]
    declined = grace("invitations", "decline", grace_invitation)
    assert declined.code == 0 and "declined cli-shared" in declined.out, declined.text
    assert json.loads(grace("projects", "--json").out) == []
    assert grace("invitations", "accept", grace_invitation).code == 1

    # the owner removes frank
    members = json.loads(erin("members", "list", "cli-shared", "--json").out)
    assert {(m["email"], m["status"]) for m in members} >= {(frank_email, "member")}
    assert all(m["status"] == "member" for m in members)  # grace's invitation is gone
    removed = erin("members", "remove", "cli-shared", frank_email)
    assert removed.code == 0 and f"removed {frank_email}" in removed.out, removed.text
    assert json.loads(frank("projects", "--json").out) == []
    assert erin("down", "cli-shared", "--yes").code == 0
