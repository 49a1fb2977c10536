"""Rendering a :class:`~cli.runview.RunView`: Rich progress bars on a terminal, throttled
plain lines elsewhere (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from cli.runview import RunView, format_duration, format_size
from cli.text import plain

__all__ = ["LiveRenderer", "PlainRenderer", "Renderer", "progress_line"]


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
            self.console.print(Text("• ") + plain(note), highlight=False, soft_wrap=True)
        if self.show_logs:
            for line in new_logs:
                self.console.print(Text("  │ ") + plain(line), highlight=False, soft_wrap=True)
        line = progress_line(view)
        now = time.monotonic()
        if line and line != self._last_line and (notes or now - self._last >= self.every):
            self.console.print(Text("  ") + plain(line), highlight=False, soft_wrap=True)
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
        parts = [
            f"{src}: {format_size(s.done)}/{format_size(s.total)}" for src, s in view.fetch.items()
        ]
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
            self._live = Live(Group(self.downloads, self.progress), console=self.console)
            self._live.start()
            self._group_started = True

    def update(self, view: RunView, notes: list[str], new_logs: list[str]) -> None:
        self._start()
        for note in notes:
            self.console.print(Text("•", style="cyan") + " " + plain(note), highlight=False)
        if self.show_logs:
            for line in new_logs:
                self.console.print(Text("  │ ", style="dim") + plain(line, "dim"), highlight=False)
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
