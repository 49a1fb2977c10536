"""What an end-to-end test needs to drive a whole project: a mirror with a tiny model and a
dataset, a spec naming them, and a small REST client for one user."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.hf_server import HubServer

TINY_MODEL = "aidp-tests/tiny-bert"
TINY_DATASET = "aidp-tests/tiny-sentiment"
TERMINAL = {"deployed", "succeeded", "failed", "cancelled", "deploy_failed"}


def publish_tiny_project(hub: HubServer, workdir: Path) -> None:
    """Put a tiny random BERT and a sentiment CSV on the mirror (seconds to train on a CPU)."""
    from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv

    model_dir = build_tiny_bert(workdir / "tiny-bert")
    hub.add_repo_dir(TINY_MODEL, model_dir, repo_type="model")
    csv = write_sentiment_csv(workdir / "data" / "train.csv", rows=64)
    hub.commit(TINY_DATASET, {"train.csv": csv.read_bytes()}, repo_type="dataset")


def tiny_spec(
    name: str | None = None, *, deploy: bool = True, max_steps: int = 12
) -> dict[str, Any]:
    return {
        "name": name or f"e2e-{uuid.uuid4().hex[:8]}",
        "model": f"hf://{TINY_MODEL}@main",
        "dataset": f"hf://datasets/{TINY_DATASET}@main",
        "task": "text-classification",
        "train": {
            "args": {"epochs": 1, "batch_size": 8, "max_steps": max_steps, "learning_rate": 5e-3},
            "checkpoint_every": 4,
        },
        "environment": {"python": "3.11", "packages": []},
        "resources": {"provider": "local", "nodes": 1, "accelerator": "cpu"},
        "deploy": {"enabled": deploy},
    }


class ApiUser:
    """One registered, logged-in user of a running gateway."""

    def __init__(
        self, base_url: str, email: str | None = None, password: str = "Correct-horse-42!"
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        self.http = httpx.Client(base_url=self.base_url, timeout=60)
        r = self.http.post("/api/auth/register", json={"email": self.email, "password": password})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"register failed: {r.status_code} {r.text}")
        r = self.http.post("/api/auth/login", json={"email": self.email, "password": password})
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def create_project(self, spec: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post("/api/projects", json={"name": spec["name"], "spec": spec})
        if r.status_code != 201:
            raise RuntimeError(f"create project failed: {r.status_code} {r.text}")
        return r.json()  # type: ignore[no-any-return]

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/runs/{run_id}")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            r = self.http.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": 500})
            r.raise_for_status()
            body = r.json()
            page = body["events"] if isinstance(body, dict) else body
            if not page:
                return out
            out.extend(page)
            after = page[-1]["seq"]

    def wait_for_run(
        self, run_id: str, *, timeout: float = 600, until: set[str] = TERMINAL
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                run = self.run(run_id)
            except httpx.HTTPError:
                time.sleep(1)
                continue
            if run["status"] in until:
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} still {run.get('status')!r} after {timeout}s")
