"""The state of one run, folded from its event envelopes (docs/design.md §3). Pure; unit tested."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cli.preflight import failed_lines, validated_lines

__all__ = [
    "FINAL_STATUSES",
    "FetchState",
    "RunView",
    "format_duration",
    "format_size",
    "source_key",
]

FINAL_STATUSES = frozenset({"deployed", "succeeded", "failed", "cancelled"})


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def source_key(source: str) -> str:
    """One key per artifact: ``hf://org/name@main`` and the cached ``hf://org/name`` match."""
    if source.startswith(("hf://", "kaggle://")) and "@" in source:
        return source.rsplit("@", 1)[0]
    return source


def format_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '42s' or '?'."""
    if seconds is None or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@dataclass
class FetchState:
    done: int = 0
    total: int | None = None


@dataclass
class RunView:
    """The state of one run, built by :meth:`apply` from its events in seq order."""

    run_id: str | None = None
    deploy_enabled: bool = True
    status: str = "queued"
    fetch: dict[str, FetchState] = field(default_factory=dict)
    fetched: bool = False
    provision_stage: str | None = None
    provision_message: str = ""
    provision_percent: float | None = None
    nodes_ready: bool = False
    world_size: int | None = None
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    samples_per_sec: float | None = None
    eta_seconds: float | None = None
    logs: list[str] = field(default_factory=list)
    model_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    deployment_id: str | None = None
    endpoint: str | None = None
    reason: str | None = None
    last_seq: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def ok(self) -> bool:
        return self.status in ("deployed", "succeeded")

    def apply(self, envelope: dict[str, Any], seq: int | None = None) -> list[str]:
        """Fold one envelope in; return short human notes about milestones it marks."""
        if seq is not None:
            self.last_seq = max(self.last_seq, seq)
        run_id = envelope.get("run_id")
        if self.run_id is not None and run_id is not None and str(run_id) != self.run_id:
            return []
        kind = envelope.get("type", "")
        p: dict[str, Any] = envelope.get("payload") or {}
        handler = getattr(self, f"_on_{kind}", None)
        return handler(p) if handler else []

    def _advance(self, status: str) -> None:
        if not self.finished:
            self.status = status

    def _on_ProjectCreated(self, p: dict[str, Any]) -> list[str]:
        self._deploy_from(p)
        return ["run queued"]

    def _on_RunRequested(self, p: dict[str, Any]) -> list[str]:
        self._deploy_from(p)
        return [f"run {p.get('run_number', '')} queued".replace("  ", " ")]

    def _deploy_from(self, p: dict[str, Any]) -> None:
        spec = p.get("spec") or {}
        self.deploy_enabled = bool((spec.get("deploy") or {}).get("enabled", False))

    def _on_FetchProgress(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        state = self.fetch.setdefault(source_key(str(p.get("source"))), FetchState())
        state.done, state.total = int(p.get("bytes_done") or 0), p.get("bytes_total")
        return []

    def _on_CachedRevisionUsed(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        rev = str(p.get("resolved_revision", ""))[:12]
        return [
            f"warning: {p.get('source')} fetched at its cached revision {rev}: {p.get('reason')}"
        ]

    def _on_ArtifactsCached(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        self.fetched = True
        notes = []
        for a in p.get("artifacts", []):
            state = self.fetch.setdefault(source_key(str(a.get("source"))), FetchState())
            state.done = state.total = int(a.get("size_bytes") or 0)
            rev = str(a.get("resolved_revision", ""))[:12]
            notes.append(f"cached {a.get('source')} @ {rev} ({format_size(a.get('size_bytes'))})")
        return notes

    def _on_ProvisioningProgress(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        stage, message = str(p.get("stage", "")), str(p.get("message", ""))
        changed = stage != self.provision_stage
        self.provision_stage, self.provision_message = stage, message
        self.provision_percent = p.get("percent")
        return [f"provisioning: {stage}{' — ' + message if message else ''}"] if changed else []

    def _on_NodesReady(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        self.nodes_ready, self.provision_percent = True, 100.0
        env = p.get("env") or {}
        names = ", ".join(n.get("name", "?") for n in p.get("nodes", []))
        versions = f"python {env.get('python')}, torch {env.get('torch_version')}"
        return [f"nodes ready: {names} ({versions})"]

    def _on_TrainingStarted(self, p: dict[str, Any]) -> list[str]:
        self._advance("training")
        self.world_size = p.get("world_size")
        resumed = p.get("resumed_from_step")
        extra = f", resumed from step {resumed}" if resumed else ""
        return [f"training started on {self.world_size} process(es){extra}"]

    def _on_TrainingProgress(self, p: dict[str, Any]) -> list[str]:
        self._advance("training")
        self.step = int(p.get("step") or 0)
        self.total_steps = p.get("total_steps") or self.total_steps
        self.samples_per_sec, self.eta_seconds = p.get("samples_per_sec"), p.get("eta_seconds")
        if p.get("loss") is not None:
            self.loss = float(p["loss"])
            self.losses.append((self.step, self.loss))
        return []

    def _on_TrainingLog(self, p: dict[str, Any]) -> list[str]:
        lines = [_ANSI.sub("", str(line)) for line in p.get("lines", [])]
        self.logs.extend(lines)
        return []

    def _on_TrainingCompleted(self, p: dict[str, Any]) -> list[str]:
        self.model_version, self.metrics = p.get("model_version"), p.get("metrics") or {}
        deploys = p.get("deploy")  # absent from an older trainer's event: the spec says
        self._advance(
            "deploying" if (self.deploy_enabled if deploys is None else deploys) else "succeeded"
        )
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items() if _num(v))
        return [f"model {self.model_version} trained{' (' + shown + ')' if shown else ''}"]

    def _on_ModelDeployed(self, p: dict[str, Any]) -> list[str]:
        self.deployment_id, self.endpoint = str(p.get("deployment_id")), p.get("endpoint")
        self._advance("deployed")
        return [f"deployed at {self.endpoint}"]

    def _fail(self, kind: str, p: dict[str, Any]) -> list[str]:
        reason = str(p.get("reason", "unknown reason"))
        if p.get("retryable"):
            return [f"{kind}: {reason} (retrying)"]
        self.reason = reason
        self._advance("failed")
        return [f"{kind}: {reason}"]

    def _on_ArtifactsFailed(self, p: dict[str, Any]) -> list[str]:
        return self._fail(f"fetching {p.get('source')} failed", p)

    def _on_DatasetValidated(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        return validated_lines(p)

    def _on_ValidationFailed(self, p: dict[str, Any]) -> list[str]:
        self._fail("pre-flight check failed", p)
        return failed_lines(p)

    def _on_NodesFailed(self, p: dict[str, Any]) -> list[str]:
        return self._fail("provisioning failed", p)

    def _on_TrainingFailed(self, p: dict[str, Any]) -> list[str]:
        return self._fail("training failed", p)

    def _on_DeploymentFailed(self, p: dict[str, Any]) -> list[str]:
        return self._fail("deployment failed", p)

    def _on_RunCancelled(self, p: dict[str, Any]) -> list[str]:
        self._advance("cancelled")
        return ["run cancelled"]


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
