"""The spec's secrets reach the training process as environment variables, and never come
back out: not in TrainingLog / TrainingProgress / TrainingCompleted / TrainingFailed
payloads, the trainer's tables, or the platform's log."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.events import EnvInfo, NodesReady, ProjectCreated, RunRequested
from tests.unit.trainer.conftest import PYTHON, Harness

pytestmark = pytest.mark.slow

TOKEN = "hf_SeCrEtVaLuE0123456789abcdef"
OTHER = "hf_OtherUsersToken9876543210zz"
REDACTED = "[redacted:HF_TOKEN]"

LEAKY_SCRIPT = """
    import hashlib, os, sys, urllib.parse
    import aidp_progress as aidp

    token = os.environ["HF_TOKEN"]
    print("env", len(token), hashlib.sha256(token.encode()).hexdigest(), flush=True)
    print("stdout says", token, flush=True)
    print("stderr says", token, file=sys.stderr, flush=True)
    print("quoted", urllib.parse.quote(token, safe=""), file=sys.stderr, flush=True)
    print("missing is set:", "NOT_STORED" in os.environ, flush=True)
    aidp.report(1, total_steps=2, loss=0.5, metrics={token: 1.0, "acc": 0.5})
    aidp.report(2, total_steps=2, loss=0.25, metrics={"acc": 0.75})
    (aidp.output_dir() / "weights.txt").write_text("trained")
    aidp.completed({"final_loss": 0.25, token: 2.0})
"""

FAILING_SCRIPT = """
    import os
    token = os.environ["HF_TOKEN"]
    raise ValueError(f"token {token} was refused")
"""

SLEEPY_SCRIPT = """
    import time
    time.sleep(4)
"""


def spec_of(script: str, *, secrets: list[str]) -> dict[str, Any]:
    return {
        "name": "secrets",
        "model": "hf://tests/tiny-bert",
        "task": "custom",
        "train": {"entrypoint": "train.py", "script": textwrap.dedent(script)},
        "deploy": {"enabled": False},
        "secrets": secrets,
    }


async def start(
    trainer: Harness,
    first: ProjectCreated | RunRequested,
    *,
    project_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    run_id, project_id = uuid.uuid4(), project_id or uuid.uuid4()
    ready = NodesReady(
        nodes=[trainer.node(f"node-{run_id.hex[:6]}")],
        env=EnvInfo(lock_hash="c" * 64, python=PYTHON, torch_version="2.13.0"),
    )
    for payload in (first, ready, trainer.artifacts(dataset=False)):
        await trainer.publish(payload, run_id=run_id, project_id=project_id)
    return run_id, project_id


def leaks(trainer: Harness, *values: str) -> list[str]:
    """Every place a value shows up: bus events (all types) and every trainer table row."""
    found = [
        f"event {e.type}" for e in trainer.events.items for v in values if v in e.model_dump_json()
    ]
    with sqlite3.connect(trainer.tmp / "trainer.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for row in db.execute(f'select * from "{table}"'):  # noqa: S608 - test, own names
                text = " ".join(str(c) for c in row)
                found += [f"table {table}" for v in values if v in text]
    return found


def command_lines_with(value: str) -> list[str]:
    """The programs whose command line (world-readable in /proc) contains ``value``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if value.encode() in cmdline:
            program = cmdline.split(b"\0")[0].decode(errors="replace")
            found.append(f"{entry}: {program}")
    return found


async def test_secret_in_environment_and_redacted_from_all_output(
    trainer: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert trainer.vault is not None
    owner = uuid.uuid4()
    trainer.vault.put_user_secret(str(owner), "HF_TOKEN", TOKEN)
    trainer.vault.put_user_secret(str(uuid.uuid4()), "NOT_STORED", "someone-elses-value")
    spec = spec_of(LEAKY_SCRIPT, secrets=["HF_TOKEN", "NOT_STORED"])
    run_id, _ = await start(trainer, ProjectCreated(owner_id=owner, spec=spec))

    completed = await trainer.events.first("TrainingCompleted", run_id)
    logs = trainer.events.logs(run_id)
    # the process really got the value
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert f"env {len(TOKEN)} {digest}" in logs
    assert "missing is set: False" in logs
    # ... and every way it printed it was redacted
    assert f"stdout says {REDACTED}" in logs
    assert f"quoted {REDACTED}" in logs
    stderr = [
        line
        for e in trainer.events.of("TrainingLog", run_id)
        if e.payload["stream"] == "stderr"
        for line in e.payload["lines"]
    ]
    assert f"stderr says {REDACTED}" in stderr
    # the name the user has not stored: skipped, with a note on the run (no failure)
    assert any("secret NOT_STORED is not stored" in line for line in logs), logs
    progress = [e.payload for e in trainer.events.of("TrainingProgress", run_id)]
    assert progress[-1]["step"] == 2
    for p in progress:  # step 1 may be coalesced away (the newest progress wins)
        if p["step"] == 1:
            assert p["metrics"] == {REDACTED: 1.0, "acc": 0.5}
    assert completed.payload["metrics"] == {"final_loss": 0.25, REDACTED: 2.0}

    assert leaks(trainer, TOKEN, "someone-elses-value") == []
    assert TOKEN not in caplog.text


async def test_failure_reason_is_redacted_and_later_runs_use_the_owner(
    trainer: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert trainer.vault is not None
    owner, editor = uuid.uuid4(), uuid.uuid4()
    trainer.vault.put_user_secret(str(owner), "HF_TOKEN", TOKEN)
    trainer.vault.put_user_secret(str(editor), "HF_TOKEN", OTHER)
    failing = spec_of(FAILING_SCRIPT, secrets=["HF_TOKEN"])
    run_1, project_id = await start(trainer, ProjectCreated(owner_id=owner, spec=failing))

    failed = await trainer.events.first("TrainingFailed", run_1)
    assert failed.payload["reason"].endswith(f"ValueError: token {REDACTED} was refused")
    assert any(f"token {REDACTED} was refused" in line for line in trainer.events.logs(run_1))

    # a later run without a requester gets the project owner's secrets (like the fetcher)
    ok = spec_of(LEAKY_SCRIPT, secrets=["HF_TOKEN"])
    run_2, _ = await start(trainer, RunRequested(spec=ok, run_number=2), project_id=project_id)
    # one requested by another member gets that member's own secrets
    run_3, _ = await start(
        trainer, RunRequested(spec=ok, run_number=3, requested_by=editor), project_id=project_id
    )
    for run_id, value in ((run_2, TOKEN), (run_3, OTHER)):
        await trainer.events.first("TrainingCompleted", run_id)
        digest = hashlib.sha256(value.encode()).hexdigest()
        assert f"env {len(value)} {digest}" in trainer.events.logs(run_id)
        assert f"stdout says {REDACTED}" in trainer.events.logs(run_id)

    assert leaks(trainer, TOKEN, OTHER) == []
    assert TOKEN not in caplog.text and OTHER not in caplog.text


async def test_secret_values_are_on_no_command_line(trainer: Harness) -> None:
    assert trainer.vault is not None
    owner = uuid.uuid4()
    trainer.vault.put_user_secret(str(owner), "HF_TOKEN", TOKEN)
    spec = spec_of(SLEEPY_SCRIPT, secrets=["HF_TOKEN"])
    run_id, _ = await start(trainer, ProjectCreated(owner_id=owner, spec=spec))
    await trainer.events.first("TrainingStarted", run_id)
    seen: list[str] = []
    for _ in range(10):  # the processes exist from TrainingStarted on (the script sleeps)
        seen += command_lines_with(TOKEN)
        await asyncio.sleep(0.2)
    assert seen == []
