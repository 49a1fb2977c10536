"""Watching one launched attempt until its processes are gone.

Per node process a pump reads its output lines: plain lines go to the run's log (batched
``TrainingLog``), ``@@aidp@@`` markers on stdout are progress (throttled
``TrainingProgress``), heartbeats, checkpoints to store (one at a time, in order) and the
final ``completed`` metrics. Every ``trainer_poll_seconds`` a watcher renews the run's lease
and reads its state: cancelled or a lost lease stops the processes (SIGTERM, SIGKILL after
``trainer_kill_grace_seconds``). A node that sent heartbeats and then no line for
``trainer_node_timeout_seconds`` is cut off: its connection dropped, the other nodes'
processes stopped, its stream given the node timeout to end. What the attempt observed is
returned as an :class:`~services.trainer.training.outcome.Attempt` for the classifier.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from services.trainer.checkpoint_paths import checkpoint_path_problem
from services.trainer.models import Run
from services.trainer.nodes.base import NodeExecutor, NodeProcess
from services.trainer.redaction import RunSecrets
from services.trainer.relay import EventRelay, parse_marker
from services.trainer.settings import TrainerSettings
from services.trainer.training.checkpoints import store_checkpoint
from services.trainer.training.launch import Handoff
from services.trainer.training.lease import RunLeases
from services.trainer.training.outcome import Attempt
from services.trainer.training.records import RunRecords
from shared.db import run_sync
from shared.errors import ProviderError
from shared.runtime import ServiceRuntime
from shared.store import ArtifactStore, DiskFull

__all__ = ["Monitor", "kill"]

log = logging.getLogger(__name__)


async def kill(
    settings: TrainerSettings,
    execs: list[NodeExecutor],
    procs: list[NodeProcess],
    grace: float | None = None,
) -> None:
    """SIGTERM every process group, then SIGKILL after the grace period (default
    ``trainer_kill_grace_seconds``)."""
    for executor, proc in zip(execs, procs, strict=True):
        await executor.kill_group(proc.pgid, signal.SIGTERM)
    await asyncio.sleep(settings.trainer_kill_grace_seconds if grace is None else grace)
    for executor, proc in zip(execs, procs, strict=True):
        await executor.kill_group(proc.pgid, signal.SIGKILL)


class Monitor:
    """Monitors the attempts of one trainer instance's runs."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: TrainerSettings,
        store: ArtifactStore,
        *,
        leases: RunLeases,
        records: RunRecords,
        handoff: Handoff,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.leases = leases
        self.records = records
        self.handoff = handoff

    async def monitor(
        self, run: Run, execs: list[NodeExecutor], procs: list[NodeProcess]
    ) -> tuple[Attempt, EventRelay]:
        """Relay the attempt's output until every process is gone; what it observed and
        the relay (its stderr tail; flushed)."""
        secrets = self.handoff.secrets.pop(run.run_id, None) or RunSecrets()
        relay = EventRelay(
            self.runtime,
            run_id=run.run_id,
            project_id=run.project_id,
            progress_interval=self.settings.trainer_progress_interval,
            flush_seconds=self.settings.trainer_log_flush_seconds,
            redactor=secrets.redactor,
        )
        for note in secrets.notes:
            relay.note(note)
        watch = _Watch(self, run, execs, procs, relay)
        await watch.run()
        # torchrun gone: no stray worker may outlive it
        for executor, proc in zip(execs, procs, strict=True):
            await executor.kill_group(proc.pgid, signal.SIGKILL)
        return watch.outcome, relay


class _Watch:
    """The pumps, checkpoint storer and watcher of one attempt."""

    def __init__(
        self,
        monitor: Monitor,
        run: Run,
        execs: list[NodeExecutor],
        procs: list[NodeProcess],
        relay: EventRelay,
    ) -> None:
        self.m = monitor
        self.settings = monitor.settings
        self.run_row = run
        self.execs = execs
        self.procs = procs
        self.relay = relay
        self.outcome = Attempt()
        self.progressed = monitor.handoff.first_progress.get(run.run_id)
        self.checkpoints: asyncio.Queue[tuple[NodeExecutor, int, str] | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.last_line = {e.node.name: self.loop.time() for e in execs}
        self.beating: set[str] = set()
        #: the output readers, by node name (silent nodes' are stopped)
        self.pumps: dict[str, asyncio.Future[int | None]] = {}

    async def run(self) -> None:
        execs, procs = self.execs, self.procs
        flusher = asyncio.ensure_future(self.relay.run())
        storer = asyncio.ensure_future(self.store_checkpoints())
        watcher = asyncio.ensure_future(self.watch())
        pumps = [asyncio.ensure_future(self.pump(e, p)) for e, p in zip(execs, procs, strict=True)]
        self.pumps = dict(zip((e.node.name for e in execs), pumps, strict=True))
        try:
            results = await asyncio.gather(*pumps, return_exceptions=True)
            for result in results:  # a pump cut off from a silent node: no exit code
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
            self.outcome.codes = [r if isinstance(r, int) else None for r in results]
        except asyncio.CancelledError:
            await asyncio.shield(kill(self.settings, execs, procs, grace=0))
            raise
        finally:
            self.pumps = {}
            # no progress came: the spare need not wait any longer
            self.m.handoff.progressed(self.run_row.run_id)
            watcher.cancel()
            await self.checkpoints.put(None)
            await asyncio.gather(storer, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, watcher, return_exceptions=True)

    async def pump(self, executor: NodeExecutor, proc: NodeProcess) -> int | None:
        """Read one process's lines until it ends; its exit code."""
        relay, name = self.relay, executor.node.name
        async for line in proc.lines():
            self.last_line[name] = self.loop.time()
            msg = parse_marker(line.text) if line.stream == "stdout" else None
            if msg is None:
                relay.log(name, line.stream, line.text)
            elif msg.get("event") == "heartbeat":
                self.beating.add(name)
            elif msg.get("event") == "progress":
                relay.progress(msg)
                if self.progressed is not None:
                    self.progressed.set()
            elif msg.get("event") == "checkpoint":
                step, path = msg.get("step"), msg.get("path")
                problem = checkpoint_path_problem(path)
                if problem is None and isinstance(step, int):
                    await self.checkpoints.put((executor, step, str(path)))
                else:
                    relay.log(
                        name,
                        "stderr",
                        f"aidp: checkpoint of step {step!r} refused: {problem or 'bad step'}",
                    )
            elif msg.get("event") == "completed":
                metrics = relay.redact(dict(msg.get("metrics") or {}))
                self.outcome.completed = (self.execs.index(executor), metrics)
        code = await proc.wait()
        if proc.limit_hit:  # the sandbox killed it: say so in the log and the reason
            self.outcome.limit_hit = proc.limit_hit
            relay.log(name, "stderr", f"aidp: the run hit {proc.limit_hit}")
        return code

    async def store_checkpoints(self) -> None:
        """Store the reported checkpoints in order, until the ``None`` sentinel."""
        while (item := await self.checkpoints.get()) is not None:
            executor, step, path = item
            try:
                await store_checkpoint(
                    runtime=self.m.runtime,
                    settings=self.settings,
                    store=self.m.store,
                    records=self.m.records,
                    run=self.run_row,
                    executor=executor,
                    step=step,
                    path=path,
                )
            except DiskFull as exc:  # later checkpoints and the model would fail too
                self.outcome.disk_full = f"checkpoint of step {step} not stored: {exc.message}"
                self.relay.log(executor.node.name, "stderr", f"aidp: {self.outcome.disk_full}")
                await kill(self.settings, self.execs, self.procs)
                return
            except ProviderError as exc:  # refused (a symlink out) or node trouble
                self.relay.log(
                    executor.node.name,
                    "stderr",
                    f"aidp: checkpoint of step {step} not stored: {exc}",
                )
            except Exception:
                log.exception("storing a checkpoint of run %s failed", self.run_row.run_id)

    async def watch(self) -> None:
        """Renew the lease; stop on cancel, a lost lease or silent nodes."""
        timeout = self.settings.trainer_node_timeout_seconds
        while True:
            await asyncio.sleep(self.settings.trainer_poll_seconds)
            state = await run_sync(self.m.leases.renew, self.run_row.run_id)
            if state is None or state == "cancelled":
                self.outcome.cancelled = state == "cancelled"
                self.outcome.lost_lease = state is None
                await kill(self.settings, self.execs, self.procs)
                return
            now_ = self.loop.time()
            silent = {n for n in self.beating if now_ - self.last_line[n] > timeout}
            if silent:  # alive nodes send heartbeats: these stopped answering
                self.outcome.silent = silent
                await self.cut_off(silent)
                await self.end_pumps(silent)
                return

    async def cut_off(self, silent: set[str]) -> None:
        """Drop the connections of ``silent`` nodes (their streams end) and stop the
        processes on the others: the attempt ends and the nodes are checked."""
        timeout = self.settings.trainer_node_timeout_seconds
        alive: list[tuple[NodeExecutor, NodeProcess]] = []
        for executor, proc in zip(self.execs, self.procs, strict=True):
            if executor.node.name not in silent:
                alive.append((executor, proc))
                continue
            self.relay.log(
                executor.node.name,
                "stderr",
                f"aidp: node {executor.node.name} sent nothing for {timeout:g} s"
                " (AIDP_TRAINER_NODE_TIMEOUT_SECONDS)",
            )
            await executor.abort()
        await kill(self.settings, [e for e, _ in alive], [p for _, p in alive])

    async def end_pumps(self, silent: set[str]) -> None:
        """Give the streams of cut-off nodes the node timeout to end, then stop reading."""
        tasks = [t for n, t in self.pumps.items() if n in silent]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.trainer_node_timeout_seconds)
        for task in pending:
            task.cancel()
