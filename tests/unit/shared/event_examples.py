"""One realistic payload per event type: the source of the golden files.

Golden files (``golden/<Type>.v<version>.json``) freeze the wire shape of each
(type, version) when it is first released. To add goldens for a new type or version, add
its example here and run ``AIDP_UPDATE_GOLDEN=1 pytest tests/unit/shared/test_event_contracts.py``;
existing goldens are never rewritten (``AIDP_UPDATE_GOLDEN=force`` does, deliberately).
"""

from __future__ import annotations

from typing import Any

OWNER = "0b5f7c1e-8d1a-4f62-9a55-3c0e2f4d9a11"
DEPLOYMENT = "5d2b8f7a-1c3e-4b9d-8e6f-7a0c9b1d2e3f"
SPEC = {
    "name": "sentiment-minilm",
    "model": "hf://sentence-transformers/all-MiniLM-L6-v2@main",
    "dataset": "hf://datasets/stanfordnlp/imdb@main",
    "task": "text-classification",
    "train": {"args": {"epochs": 1, "max_steps": 200}},
    "resources": {"provider": "local", "nodes": 1, "accelerator": "cpu"},
    "secrets": ["HF_TOKEN"],
}
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

EXAMPLES: dict[str, dict[str, Any]] = {
    "ProjectCreated": {"owner_id": OWNER, "spec": SPEC, "run_number": 1},
    "RunRequested": {"spec": SPEC, "run_number": 2, "requested_by": OWNER, "owner_id": OWNER},
    "RunCancelled": {"by": OWNER},
    "ProjectDeleted": {"by": OWNER, "run_ids": [DEPLOYMENT]},
    "ProvisioningProgress": {"stage": "ansible", "message": "installing torch", "percent": 40.0},
    "NodesReady": {
        "nodes": [
            {
                "name": "local-0",
                "address": "127.0.0.1",
                "ssh_user": None,
                "ssh_port": 22,
                "proxy": None,
                "workdir": "/var/lib/aidp/runs/r1",
                "accelerator": "cpu",
                "provider": "local",
                "python": "/var/lib/aidp/envs/abc/bin/python",
            }
        ],
        "env": {"lock_hash": "abc123", "python": "3.11", "torch_version": "2.13.0"},
    },
    "NodesFailed": {"reason": "ssh: connection refused", "retryable": True, "step": "connect"},
    "NodesReleased": {"nodes": ["local-0"]},
    "NodeLost": {
        "nodes": ["ssh-0"],
        "reason": "node ssh-0 does not answer over SSH: connection refused",
        "attempt": 1,
        "resume_step": 10,
    },
    "NodesReplaced": {
        "nodes": [
            {
                "name": "ssh-0",
                "address": "10.0.0.6",
                "ssh_user": "root",
                "ssh_port": 22,
                "proxy": None,
                "workdir": "/opt/aidp/runs/r1",
                "accelerator": "cpu",
                "provider": "ssh",
                "python": "/opt/aidp/envs/abc/venv/bin/python",
                "run_user": "aidp-run",
            }
        ],
        "replaced": ["ssh-0"],
        "reason": "node ssh-0 does not answer over SSH: connection refused",
        "replacements": 1,
    },
    "FetchProgress": {"source": "hf://org/model@main", "bytes_done": 1024, "bytes_total": 4096},
    "CachedRevisionUsed": {
        "source": "hf://org/model@main",
        "ref": "main",
        "resolved_revision": "0123456789abcdef0123456789abcdef01234567",
        "resolved_at": "2026-11-30T12:00:00+00:00",
        "reason": "Could not reach HuggingFace at https://huggingface.co to fetch 'org/model'",
    },
    "ArtifactsCached": {
        "artifacts": [
            {
                "kind": "model",
                "source": "hf://sentence-transformers/all-MiniLM-L6-v2@main",
                "resolved_revision": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
                "digest": DIGEST,
                "size_bytes": 90868376,
                "cache_key": "hf:sentence-transformers/all-MiniLM-L6-v2@c9745ed",
            }
        ]
    },
    "ArtifactsFailed": {"source": "kaggle://owner/slug", "reason": "401", "retryable": False},
    "DatasetValidated": {
        "task": "chat",
        "rows_checked": 1000,
        "rows_total": 5210,
        "tokens_mean": 212.5,
        "tokens_max": 1931,
        "max_length": 1024,
        "over_max_length": 3,
        "method": "lora",
        "model_params": 494032768,
        "estimated_steps": 326,
        "estimated_seconds": 812.0,
        "issues": [
            {
                "file": "train.jsonl",
                "row": 17,
                "problem": "1931 tokens, over max_length 1024: truncated",
                "severity": "warning",
            }
        ],
        "notes": ["rows_total counted from the whole file"],
    },
    "ValidationFailed": {
        "task": "chat",
        "reason": "2 of 1000 rows are malformed (row 7 of train.jsonl: roles not alternating)",
        "rows_checked": 1000,
        "error_rows": 2,
        "issues": [
            {
                "file": "train.jsonl",
                "row": 7,
                "problem": "roles not alternating: user then user",
                "severity": "error",
            }
        ],
    },
    "TrainingStarted": {"world_size": 2, "nodes": ["n0", "n1"], "attempt": 1},
    "TrainingProgress": {
        "step": 50,
        "total_steps": 200,
        "epoch": 0.25,
        "loss": 0.61,
        "metrics": {"accuracy": 0.72},
        "samples_per_sec": 120.5,
        "eta_seconds": 75.0,
    },
    "TrainingLog": {"node": "n0", "stream": "stdout", "lines": ["step 50 loss 0.61"]},
    "TrainingCompleted": {"model_version": "v1", "metrics": {"accuracy": 0.9}, "digest": DIGEST},
    "TrainingFailed": {"reason": "CUDA out of memory", "exit_code": 1, "retryable": False},
    "ModelDeployed": {
        "deployment_id": DEPLOYMENT,
        "endpoint": f"/api/deployments/{DEPLOYMENT}/predict",
        "model_version": "v1",
    },
    "DeploymentFailed": {"reason": "model load failed", "deployment_id": DEPLOYMENT},
    "DeploymentStopped": {
        "deployment_id": DEPLOYMENT,
        "reason": "stopped",
        "by": OWNER,
        "on_run_nodes": True,
    },
    "DeploymentPromoted": {
        "deployment_id": DEPLOYMENT,
        "previous_deployment_id": "7e3c9a1b-2d4f-4a6c-8b0e-1f2a3b4c5d6e",
        "rollback": False,
    },
    "DeploymentScaled": {
        "deployment_id": DEPLOYMENT,
        "replicas": 0,
        "reason": "scaled to zero after 900s without a request",
    },
    "SessionsRevoked": {
        "user_id": "3f1b0c9e-8a7d-4c2b-9e1f-5a6b7c8d9e0f",
        "not_before": "2026-11-30T12:00:00Z",
        "reason": "logout",
    },
    "SigningKeyRevoked": {"kid": "20261201105500-1a2b3c4d"},
    "MembershipChanged": {"user_id": "3f1b0c9e-8a7d-4c2b-9e1f-5a6b7c8d9e0f", "role": None},
}
