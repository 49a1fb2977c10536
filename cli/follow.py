"""Live progress of a run, from the WebSocket event stream (DESIGN §6).

:class:`RunView` folds event envelopes into the state of one run (pure, unit tested);
:class:`LiveRenderer` shows it as Rich progress bars on a terminal and
:class:`PlainRenderer` as throttled lines elsewhere (CI logs, pipes).
:func:`follow_run` ties a :class:`~cli.sdk.Client` stream to a renderer until the run ends.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cli.sdk import AidpError, Client

__all__ = [
    "FINAL_STATUSES",
    "LiveRenderer",
    "PlainRenderer",
    "RunView",
    "follow_run",
    "format_duration",
]

FINAL_STATUSES = frozenset({"deployed", "succeeded", "failed", "cancelled"})
_FAILURES = ("ArtifactsFailed", "NodesFailed", "TrainingFailed", "DeploymentFailed")


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


def _size(n: float | None) -> str:
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

    def _on_ArtifactsCached(self, p: dict[str, Any]) -> list[str]:
        self._advance("preparing")
        self.fetched = True
        notes = []
        for a in p.get("artifacts", []):
            state = self.fetch.setdefault(source_key(str(a.get("source"))), FetchState())
            state.done = state.total = int(a.get("size_bytes") or 0)
            rev = str(a.get("resolved_revision", ""))[:12]
            notes.append(f"cached {a.get('source')} @ {rev} ({_size(a.get('size_bytes'))})")
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
        self._advance("deploying" if self.deploy_enabled else "succeeded")
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


class Renderer(Protocol):
    def update(self, view: RunView, notes: list[str], new_logs: list[str]) -> None: ...
    def close(self) -> None: ...


class PlainRenderer:
    """Line-by-line output for pipes and CI: milestones, logs, progress every few seconds."""

    def __init__(self, console: Console, *, show_logs: bool = True, every: float = 5.0) -> None:
        self.console, self.show_logs, self.every = console, show_logs, every
        self._last = 0.0
        self._last_line = ""

    def update(self, view: RunView, notes: list[str], new_logs: list[str]) -> None:
        for note in notes:
            self.console.print(f"• {note}", highlight=False, soft_wrap=True)
        if self.show_logs:
            for line in new_logs:
                self.console.print(f"  │ {line}", highlight=False, markup=False, soft_wrap=True)
        line = progress_line(view)
        now = time.monotonic()
        if line and line != self._last_line and (notes or now - self._last >= self.every):
            self.console.print(f"  {line}", highlight=False, soft_wrap=True)
            self._last, self._last_line = now, line

    def close(self) -> None:
        return None


def progress_line(view: RunView) -> str:
    """One line summing up where the run is (empty before anything happened)."""
    if view.status == "training" and view.step:
        total = f"/{view.total_steps}" if view.total_steps else ""
        loss = f" loss {view.loss:.4f}" if view.loss is not None else ""
        sps = f" {view.samples_per_sec:.1f} samples/s" if view.samples_per_sec else ""
        return f"step {view.step}{total}{loss}{sps} ETA {format_duration(view.eta_seconds)}"
    if view.status == "preparing":
        parts = [f"{src}: {_size(s.done)}/{_size(s.total)}" for src, s in view.fetch.items()]
        if view.provision_stage and not view.nodes_ready:
            pct = f" {view.provision_percent:.0f}%" if view.provision_percent is not None else ""
            parts.append(f"provisioning {view.provision_stage}{pct}")
        return "; ".join(parts)
    return ""


class LiveRenderer:
    """Rich progress bars: one per download, one for provisioning, one for training."""

    def __init__(self, console: Console, *, show_logs: bool = True) -> None:
        self.console, self.show_logs = console, show_logs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self.downloads = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._group_started = False

    def _start(self) -> None:
        if not self._group_started:
            from rich.console import Group
            from rich.live import Live

            self._live = Live(Group(self.downloads, self.progress), console=self.console)
            self._live.start()
            self._group_started = True

    def update(self, view: RunView, notes: list[str], new_logs: list[str]) -> None:
        self._start()
        for note in notes:
            self.console.print(f"[cyan]•[/] {note}", highlight=False)
        if self.show_logs:
            for line in new_logs:
                self.console.print(f"[dim]  │ {line}[/]", highlight=False)
        for source, state in view.fetch.items():
            key = f"fetch:{source}"
            if key not in self._tasks:
                self._tasks[key] = self.downloads.add_task(f"fetch {source}", total=None)
            self.downloads.update(self._tasks[key], completed=state.done, total=state.total)
        if view.provision_stage is not None:
            if "prov" not in self._tasks:
                self._tasks["prov"] = self.progress.add_task("provision", total=100, detail="")
            self.progress.update(
                self._tasks["prov"],
                completed=100 if view.nodes_ready else (view.provision_percent or 0),
                detail="ready" if view.nodes_ready else view.provision_stage,
            )
        if view.step or view.status == "training":
            if "train" not in self._tasks:
                self._tasks["train"] = self.progress.add_task("train", total=None, detail="")
            loss = f"loss {view.loss:.4f}" if view.loss is not None else ""
            sps = f"{view.samples_per_sec:.1f}/s" if view.samples_per_sec else ""
            detail = (
                f"{view.step}/{view.total_steps or '?'} {loss} {sps} "
                f"ETA {format_duration(view.eta_seconds)}"
            )
            self.progress.update(
                self._tasks["train"], completed=view.step, total=view.total_steps, detail=detail
            )

    def close(self) -> None:
        if self._group_started:
            self._live.stop()


def follow_run(
    client: Client,
    *,
    project_id: str,
    run_id: str,
    renderer: Renderer,
    view: RunView | None = None,
    poll_every: float = 5.0,
) -> RunView:
    """Stream a run's events into ``renderer`` until it reaches a final status.

    The server's run status (``GET /api/runs/{id}``) is authoritative: it is read when the
    stream is quiet or an event looks final, so a missed or retried event cannot hang us.
    """
    view = view or RunView(run_id=run_id)
    seen_logs = len(view.logs)
    last_poll = 0.0
    try:
        for message in client.stream_events(project_id, idle_timeout=poll_every):
            if message.get("type") == "event":
                envelope = message.get("event") or {}
                notes = view.apply(envelope, message.get("seq"))
                renderer.update(view, notes, view.logs[seen_logs:])
                seen_logs = len(view.logs)
                final_hint = envelope.get("type") in (
                    *_FAILURES,
                    "ModelDeployed",
                    "RunCancelled",
                    "TrainingCompleted",
                )
            else:
                final_hint = True
            if view.finished or final_hint or time.monotonic() - last_poll > poll_every:
                last_poll = time.monotonic()
                status = _server_status(client, run_id)
                if status in FINAL_STATUSES:
                    view.status = status
                    _fill_outcome(client, run_id, view)
                    break
    finally:
        renderer.close()
    return view


def _server_status(client: Client, run_id: str) -> str | None:
    try:
        return client.get_run(run_id).get("status")
    except AidpError:
        return None


def _fill_outcome(client: Client, run_id: str, view: RunView) -> None:
    """Complete the view from the run resource (reason, deployment) when events lacked them."""
    try:
        run = client.get_run(run_id)
    except AidpError:
        return
    view.reason = view.reason or run.get("reason") or run.get("error")
    view.deployment_id = view.deployment_id or run.get("deployment_id")
    view.endpoint = view.endpoint or run.get("endpoint")
