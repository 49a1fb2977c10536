"""The training jobs of one trainer instance and their supervisor.

The supervisor claims runs in an active state (``staging``/``training``) whose lease is
free or expired (:mod:`.lease`), so runs left behind by a crashed trainer (this one or
another replica) are resumed; a claimed run's job renews the lease while it works. One job
attempt: kill any process group a previous attempt left, stage artifacts (and the latest
checkpoint) on every node and start the processes (:mod:`.launch`), relay their output and
store checkpoints as they appear (:mod:`.monitor`), then act on the attempt's outcome
(:mod:`.outcome`): completed (register the model: :mod:`.complete`; ``TrainingCompleted``
says whether it deploys, and the serving side starts the deployment from it), retry
from the latest checkpoint (the process was killed), a lost node (NodeLost: the run waits
in ``replacing`` for NodesReplaced and resumes on the new node list from its latest
checkpoint), or failed (an error in the script). State changes: :mod:`.records`.

A node is lost when, after its process died or went silent, a fresh SSH connection gets no
answer within ``AIDP_TRAINER_NODE_TIMEOUT_SECONDS``. Streams end by themselves when the
connection drops or fails its keepalives (every third of that timeout, three missed); a
node whose process sent heartbeats (aidp_progress) and then nothing for the timeout is
cut off by the watcher.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from services.trainer.models import Run
from services.trainer.nodes.base import NodeExecutor
from services.trainer.nodes.factory import node_executor
from services.trainer.nodes.local import LocalExecutor
from services.trainer.relay import EventRelay
from services.trainer.runs import ACTIVE
from services.trainer.settings import TrainerSettings
from services.trainer.staging import workspace_of
from services.trainer.training.complete import complete
from services.trainer.training.launch import Handoff, Launcher
from services.trainer.training.lease import RunLeases
from services.trainer.training.monitor import Monitor, kill
from services.trainer.training.outcome import (
    Attempt,
    Outcome,
    Verdict,
    classify,
    classify_launch_failure,
    needs_node_check,
)
from services.trainer.training.records import RunRecords
from services.trainer.training.stage import kill_previous
from services.trainer.warm import WarmPool
from shared.db import run_sync
from shared.errors import ProviderError
from shared.events import EnvInfo, TrainingStarted
from shared.runtime import ServiceRuntime
from shared.spec import ProjectSpec
from shared.store import ArtifactStore, DiskFull

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)


class JobRunner:
    """Owns the training jobs of this trainer instance."""

    def __init__(
        self, runtime: ServiceRuntime, settings: TrainerSettings, store: ArtifactStore
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.instance = uuid.uuid4().hex
        self.jobs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.warm = WarmPool(
            size=settings.trainer_warm_workers,
            min_available_mb=settings.trainer_warm_min_available_mb,
        )
        self.leases = RunLeases(runtime.db, settings, self.instance)
        self.records = RunRecords(runtime, settings, self.instance)
        handoff = Handoff()
        self.launcher = Launcher(runtime, settings, store, self.warm, handoff, self.jobs)
        self.monitor = Monitor(
            runtime, settings, store, leases=self.leases, records=self.records, handoff=handoff
        )

    # -- supervisor ----------------------------------------------------------------------

    def kick(self) -> None:
        """A run became ready: look for work now instead of at the next poll."""
        self._wake.set()

    async def supervise(self) -> None:
        """Claim runnable runs and start their jobs, until cancelled (which also stops
        the warm spares)."""
        try:
            await self._supervise()
        finally:
            await asyncio.shield(self.warm.close())

    async def _supervise(self) -> None:
        while True:
            try:
                for run_id in await run_sync(self.leases.claim, self.jobs):
                    self.jobs[run_id] = self.runtime.spawn(self._job(run_id), name=f"run-{run_id}")
            except Exception:
                log.exception("trainer supervisor pass failed")
            self._wake.clear()
            try:  # asyncio.timeout: 3.11's wait_for can swallow a cancel (see shared.outbox)
                async with asyncio.timeout(self.settings.trainer_poll_seconds * 2):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # -- one job -------------------------------------------------------------------------

    def executors(self, run: Run) -> list[NodeExecutor]:
        """Executors of the run's nodes: SSH ones check the host keys pinned for the run's
        owner; local ones sandbox the run, its ranks in one network namespace."""
        nodes = run.nodes or []
        names = [str(n.get("name", "")) for n in nodes]
        return [
            node_executor(
                n,
                self.settings,
                tenant=run.run_id,
                owner=run.owner_id,
                shared_network=True,
                peers=names,
            )
            for n in nodes
        ]

    async def _job(self, run_id: uuid.UUID) -> None:
        try:
            while await self._attempt(run_id):
                pass
        except asyncio.CancelledError:
            await asyncio.shield(run_sync(self.leases.release, run_id))
            raise
        except Exception as exc:  # an aidp bug or an unreachable store: fail visibly
            log.exception("training job for run %s crashed", run_id)
            await run_sync(self.records.finish_failed, run_id, f"trainer error: {exc}", None, True)
        finally:
            self.jobs.pop(run_id, None)

    async def _attempt(self, run_id: uuid.UUID) -> bool:
        """One launch. Returns True when the run should be launched again (retry)."""
        run, ckpt = await run_sync(self.records.load, run_id)
        if run.state not in ACTIVE:
            return False
        if run.state == "training":  # resumed after a trainer crash or restart
            if not await run_sync(self.records.back_to_staging, run_id):
                return False
        spec = ProjectSpec.model_validate(run.spec)
        env = EnvInfo.model_validate(run.env)
        execs = self.executors(run)
        try:
            await kill_previous(run, execs)
            try:
                procs, world = await self.launcher.launch(run, spec, env, execs, ckpt)
            except (OSError, TimeoutError, Exception) as exc:  # staging or start failed
                if isinstance(exc, asyncio.CancelledError):
                    raise
                lost = await self._lost_nodes(execs, suspects=set())
                return await self._act(run, execs, classify_launch_failure(str(exc), lost=lost))
            started = TrainingStarted(
                world_size=world,
                nodes=[e.node.name for e in execs],
                attempt=run.attempt + 1,
                resumed_from_step=ckpt.step if ckpt else None,
            )
            ok = await run_sync(
                self.records.to_training,
                run_id,
                started,
                {e.node.name: p.pgid for e, p in zip(execs, procs, strict=True)},
            )
            if not ok:
                await kill(self.settings, execs, procs, grace=0)
                await self.cleanup(run_id, execs)
                return False
            outcome, relay = await self.monitor.monitor(run, execs, procs)
            return await self._decide(run, spec, execs, outcome, relay)
        finally:
            for executor in execs:
                await executor.close()
                await executor.release()  # the attempt's processes are gone

    # -- outcome -------------------------------------------------------------------------

    async def _decide(
        self,
        run: Run,
        spec: ProjectSpec,
        execs: list[NodeExecutor],
        outcome: Attempt,
        relay: EventRelay,
    ) -> bool:
        """Classify the attempt (asking the nodes again when it may have lost one), say
        why in the run's log, and act. True: launch again."""
        tail = list(relay.stderr_tail)
        lost: list[str] = []
        if needs_node_check(outcome, tail):
            lost = await self._lost_nodes(execs, suspects=outcome.silent)
        decided = classify(
            outcome,
            tail,
            lost=lost,
            node_names=[e.node.name for e in execs],
            retry_larger_on_oom=spec.resources.retry_larger_on_oom,
        )
        if decided.note is not None:
            relay.log(decided.note[0], "stderr", decided.note[1])
            await relay.flush()
        if decided.verdict is Verdict.COMPLETED:
            await self._complete(run, spec, execs, outcome)
            return False
        return await self._act(run, execs, decided)

    async def _act(self, run: Run, execs: list[NodeExecutor], decided: Outcome) -> bool:
        """Carry out a verdict other than completed. True: launch again."""
        run_id = run.run_id
        if decided.verdict is Verdict.ABANDONED:
            return False
        if decided.verdict is Verdict.REPLACE:  # no job owns the run until NodesReplaced
            await run_sync(
                self.records.to_replacing,
                run_id,
                list(decided.nodes),
                decided.reason,
                decided.launched,
                decided.larger,
            )
            return False
        retry = False
        if decided.verdict is Verdict.FAILED:
            await run_sync(self.records.finish_failed, run_id, decided.reason, None, False)
        elif decided.verdict is Verdict.RETRY_OR_FAIL:
            retry = await run_sync(
                self.records.retry_or_fail,
                run_id,
                decided.reason,
                decided.exit_code,
                decided.retryable,
                decided.launched,
            )
        if not retry and decided.launched:
            await self.cleanup(run_id, execs)
        return retry

    async def _complete(
        self, run: Run, spec: ProjectSpec, execs: list[NodeExecutor], outcome: Attempt
    ) -> None:
        try:
            deployment_id = await complete(
                runtime=self.runtime,
                settings=self.settings,
                store=self.store,
                records=self.records,
                run=run,
                spec=spec,
                execs=execs,
                outcome=outcome,
            )
        except DiskFull as exc:
            reason = f"the trained model was not stored: {exc.message}"
            await run_sync(self.records.finish_failed, run.run_id, reason, None, False)
            await self.cleanup(run.run_id, execs)
            return
        if deployment_id is None:
            await self.cleanup(run.run_id, execs)
        # else: the deployment starts when the trainer consumes TrainingCompleted (deploy)

    async def _lost_nodes(self, execs: list[NodeExecutor], *, suspects: set[str]) -> list[str]:
        """The remote nodes that do not answer a fresh SSH connection within the node
        timeout (``suspects`` went silent and are asked again too). Local nodes are never
        lost."""
        timeout = self.settings.trainer_node_timeout_seconds

        async def answers(executor: NodeExecutor) -> bool:
            if isinstance(executor, LocalExecutor):
                return True
            await executor.abort()  # a new connection, not the one that broke
            try:
                code, _, _ = await asyncio.wait_for(
                    executor.run(["true"], timeout=timeout), timeout
                )
            except (ProviderError, OSError, TimeoutError):
                return False
            finally:
                await executor.close()
            return code == 0

        results = await asyncio.gather(*(answers(e) for e in execs))
        lost = [e.node.name for e, ok in zip(execs, results, strict=True) if not ok]
        if lost:
            log.warning("nodes %s lost (suspected silent: %s)", lost, sorted(suspects))
        return lost

    async def cleanup(self, run_id: uuid.UUID, execs: list[NodeExecutor] | None = None) -> None:
        """Remove the run's workspace (all plaintext) from its nodes. Best effort."""
        run, _ = await run_sync(self.records.load, run_id)
        own = execs is None
        execs = execs if execs is not None else self.executors(run)
        try:
            for executor in execs:
                try:
                    await executor.remove_tree(workspace_of(executor, run_id))
                    await executor.release()
                except Exception:
                    log.warning(
                        "could not clean the workspace of run %s on %s", run_id, executor.node.name
                    )
        finally:
            if own:
                for executor in execs:
                    await executor.close()
        await run_sync(self.records.mark_cleaned, run_id)
