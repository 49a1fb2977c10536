"""The trainer on RabbitMQ + PostgreSQL + OpenBao: train, deploy, predict; survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.secrets.vault import VaultClient
from tests.support.service_auth import as_service
from tests.unit.trainer.conftest import running_trainer, text_spec
from tests.unit.trainer.factories import build_tiny_bert, write_sentiment_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def infra_settings(
    amqp_url: str, postgres_url: str, bao_server: tuple[str, str]
) -> dict[str, object]:
    addr, token = bao_server
    return {
        "bus_url": amqp_url,
        "database_url": postgres_url,
        "vault_addr": addr,
        "vault_token": token,
        "mode": "distributed",
        "allow_local_provider": True,  # the run uses the test machine as its node
    }


async def test_train_deploy_predict_on_real_infrastructure(
    tmp_path: Path, infra_settings: dict[str, Any], bao_server: tuple[str, str]
) -> None:
    tiny = (
        build_tiny_bert(tmp_path / "tiny" / "model"),
        write_sentiment_csv(tmp_path / "tiny" / "data" / "train.csv", rows=48).parent,
    )
    async with running_trainer(tmp_path, tiny, real_vault=True, **infra_settings) as trainer:
        spec = text_spec(args={"epochs": 2}, checkpoint_every=4)
        spec["deploy"] = {"enabled": True}
        run_id = await trainer.start_run(spec=spec, order="nodes-artifacts-spec")
        ev = trainer.events
        await ev.first("TrainingStarted", run_id, timeout=120)
        completed = await ev.first("TrainingCompleted", run_id, timeout=240)
        steps = [e.payload["step"] for e in ev.of("TrainingProgress", run_id)]
        assert steps == sorted(steps) and steps[-1] == 12
        deployed = await ev.first("ModelDeployed", run_id, timeout=180)
        dep_id = deployed.payload["deployment_id"]
        transport = httpx.ASGITransport(app=trainer.app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://t",
            # distributed mode: the gateway's token signed by its Vault transit key
            auth=as_service("trainer", vault=VaultClient(bao_server[0], token=bao_server[1])),
        ) as client:
            r = await client.post(
                f"/internal/deployments/{dep_id}/predict",
                json={"inputs": ["great film", "awful plot"]},
            )
            assert r.status_code == 200, r.text
            assert [o["label"] in ("pos", "neg") for o in r.json()["outputs"]] == [True, True]
            r = await client.get(f"/internal/models/{completed.payload['model_version']}/download")
            assert r.status_code == 200 and b"model.safetensors" in r.content
            await client.delete(f"/internal/deployments/{dep_id}")
        # the store holds ciphertext only: no safetensors header in any blob
        blobs = [p for p in (tmp_path / "data" / "store").rglob("*") if p.is_file()]
        assert blobs and not any(b"__metadata__" in p.read_bytes()[:4096] for p in blobs)
