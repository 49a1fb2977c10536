"""Background training jobs and their supervisor.

The supervisor claims runs in an active state (``staging``/``training``) whose lease is
free or expired, so runs left behind by a crashed trainer (this one or another replica) are
resumed; a claimed run's job renews the lease while it works. One job attempt: kill any
process group a previous attempt left, stage artifacts (and the latest checkpoint) on every
node, launch torchrun, relay output, store checkpoints as they appear, then decide:
completed (register the model, maybe deploy), retry from the latest checkpoint (the process
was killed), a lost node (NodeLost: the run waits in ``replacing`` for NodesReplaced and
resumes on the new node list from its latest checkpoint), or failed (an error in the
script).

A node is lost when, after its process died or went silent, a fresh SSH connection gets no
answer within ``AIDP_TRAINER_NODE_TIMEOUT_SECONDS``. Streams end by themselves when the
connection drops or fails its keepalives (every third of that timeout, three missed); a
node whose process sent heartbeats (aidp_progress) and then nothing for the timeout is
cut off by the watcher.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import signal
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from services.trainer.adapters import adapter_facts, with_base
from services.trainer.checkpoint_paths import checkpoint_path_problem, ensure_inside
from services.trainer.launch import launch_env, plan_launch
from services.trainer.models import Checkpoint, Deployment, Run, now
from services.trainer.nodes import LocalExecutor, NodeExecutor, NodeProcess, node_executor
from services.trainer.redaction import RunSecrets, read_run_secrets
from services.trainer.registry import latest_checkpoint, register_model
from services.trainer.relay import EventRelay, parse_marker
from services.trainer.retention import prune_checkpoints, record_created
from services.trainer.runs import ACTIVE, transition
from services.trainer.settings import TrainerSettings
from services.trainer.staging import (
    StoredTree,
    restore_missing,
    stage_manifest,
    stage_sources,
    store_tree,
    workspace_of,
)
from services.trainer.training.outcome import (
    Attempt,
    Verdict,
    budget,
    classify,
    classify_launch_failure,
    needs_node_check,
)
from services.trainer.warm import WarmPool, WarmSpare
from shared.errors import Conflict, ProviderError
from shared.events import (
    EnvInfo,
    NodeLost,
    TrainingCompleted,
    TrainingFailed,
    TrainingStarted,
)
from shared.runtime import ServiceRuntime
from shared.spec import DeploySpec, ProjectSpec
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
        self.on_deploy: Any = None  # set by the service: async (deployment_id) -> None
        self._secrets: dict[uuid.UUID, RunSecrets] = {}  # launched, until monitored
        #: the output readers of each monitored run, by node name (silent nodes' are stopped)
        self._pumps: dict[uuid.UUID, dict[str, asyncio.Future[int | None]]] = {}
        #: set at a run's first progress: the warm pool starts the next spare then
        self._first_progress: dict[uuid.UUID, asyncio.Event] = {}
        self.warm = WarmPool(
            size=settings.trainer_warm_workers,
            min_available_mb=settings.trainer_warm_min_available_mb,
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
                for run_id in await asyncio.to_thread(self._claim):
                    self.jobs[run_id] = self.runtime.spawn(self._job(run_id), name=f"run-{run_id}")
            except Exception:
                log.exception("trainer supervisor pass failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.trainer_poll_seconds * 2)
            except TimeoutError:
                pass

    def _claim(self) -> list[uuid.UUID]:
        claimed = []
        with self.runtime.db.session() as session:
            candidates = session.exec(select(Run.run_id).where(col(Run.state).in_(ACTIVE))).all()
            for run_id in candidates:
                if run_id in self.jobs:
                    continue
                moment = now()
                result = session.execute(
                    update(Run)
                    .where(
                        col(Run.run_id) == run_id,
                        col(Run.state).in_(ACTIVE),
                        or_(
                            col(Run.owner).is_(None),
                            col(Run.lease_until) < moment,
                            col(Run.owner) == self.instance,
                        ),
                    )
                    .values(owner=self.instance, lease_until=self._lease_end())
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(run_id)
            session.commit()
        return claimed

    def _lease_end(self) -> Any:
        return now() + timedelta(seconds=self.settings.trainer_lease_seconds)

    def _renew(self, run_id: uuid.UUID) -> str | None:
        """Extend the lease; returns the run's state, or None if the lease was lost."""
        with self.runtime.db.session() as session:
            result = session.execute(
                update(Run)
                .where(col(Run.run_id) == run_id, col(Run.owner) == self.instance)
                .values(lease_until=self._lease_end())
            )
            session.commit()
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            run = session.get(Run, run_id)
            return None if run is None else run.state

    def _release(self, run_id: uuid.UUID) -> None:
        with self.runtime.db.session() as session:
            session.execute(
                update(Run)
                .where(col(Run.run_id) == run_id, col(Run.owner) == self.instance)
                .values(owner=None, lease_until=None)
            )
            session.commit()

    # -- one job -------------------------------------------------------------------------

    def executors(self, nodes: list[dict[str, Any]], run_id: uuid.UUID) -> list[NodeExecutor]:
        """Executors of the run's nodes; local ones sandbox the run, its ranks in one
        network namespace."""
        names = [str(n.get("name", "")) for n in nodes]
        return [
            node_executor(n, self.settings, tenant=run_id, shared_network=True, peers=names)
            for n in nodes
        ]

    async def _job(self, run_id: uuid.UUID) -> None:
        try:
            while await self._attempt(run_id):
                pass
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self._release, run_id))
            raise
        except Exception as exc:  # an aidp bug or an unreachable store: fail visibly
            log.exception("training job for run %s crashed", run_id)
            await asyncio.to_thread(
                self._finish_failed, run_id, f"trainer error: {exc}", None, True
            )
        finally:
            self.jobs.pop(run_id, None)

    def _load(self, run_id: uuid.UUID) -> tuple[Run, Checkpoint | None]:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise Conflict(f"run {run_id} vanished")
            return run, latest_checkpoint(session, run_id)

    async def _attempt(self, run_id: uuid.UUID) -> bool:
        """One launch. Returns True when the run should be launched again (retry)."""
        run, ckpt = await asyncio.to_thread(self._load, run_id)
        if run.state not in ACTIVE:
            return False
        if run.state == "training":  # resumed after a trainer crash or restart
            if not await asyncio.to_thread(self._back_to_staging, run_id):
                return False
        spec = ProjectSpec.model_validate(run.spec)
        env = EnvInfo.model_validate(run.env)
        execs = self.executors(run.nodes or [], run_id)
        try:
            await self._kill_previous(run, execs)
            try:
                procs, world = await self._launch(run, spec, env, execs, ckpt)
            except (OSError, TimeoutError, Exception) as exc:  # staging or start failed
                if isinstance(exc, asyncio.CancelledError):
                    raise
                lost = await self._lost_nodes(execs, suspects=set())
                failure = classify_launch_failure(str(exc), lost=lost)
                if failure.verdict is Verdict.REPLACE:
                    return await self._replace_nodes(
                        run_id, list(failure.nodes), failure.reason, launched=False
                    )
                return await asyncio.to_thread(
                    self._retry_or_fail, run_id, failure.reason, None, True, False
                )
            attempt_no = run.attempt + 1
            started = TrainingStarted(
                world_size=world,
                nodes=[e.node.name for e in execs],
                attempt=attempt_no,
                resumed_from_step=ckpt.step if ckpt else None,
            )
            ok = await asyncio.to_thread(
                self._to_training,
                run_id,
                started,
                {e.node.name: p.pgid for e, p in zip(execs, procs, strict=True)},
            )
            if not ok:
                await self._kill(execs, procs, grace=0)
                await self.cleanup(run_id, execs)
                return False
            outcome, relay = await self._monitor(run, execs, procs)
            return await self._decide(run, spec, execs, outcome, relay)
        finally:
            for executor in execs:
                await executor.close()
                await executor.release()  # the attempt's processes are gone

    async def _kill_previous(self, run: Run, execs: list[NodeExecutor]) -> None:
        """Stop process groups a previous attempt (or a crashed trainer) left running."""
        recorded = run.processes or {}
        for executor in execs:
            pgid = recorded.get(executor.node.name)
            if pgid:
                await executor.kill_group(int(pgid), signal.SIGKILL)

    async def _launch(
        self,
        run: Run,
        spec: ProjectSpec,
        env: EnvInfo,
        execs: list[NodeExecutor],
        ckpt: Checkpoint | None,
    ) -> tuple[list[NodeProcess], int]:
        by_kind = {a["kind"]: a for a in run.artifacts or []}
        extra: dict[str, str] = {}
        if spec.task == "custom":
            script = spec.train.script or ""
            extra[posixpath.join("src", "user", spec.train.entrypoint or "train.py")] = script

        async def stage(executor: NodeExecutor) -> None:
            ws = workspace_of(executor, run.run_id)
            await executor.remove_tree(posixpath.join(ws, "resume"))
            await executor.remove_tree(posixpath.join(ws, "checkpoints"))
            await stage_sources(executor=executor, workspace=ws, extra=extra)
            for kind, dest in (("model", "model"), ("dataset", "data")):
                if kind in by_kind:
                    await stage_manifest(
                        executor=executor,
                        store=self.store,
                        key=by_kind[kind]["cache_key"],
                        workspace=ws,
                        dest=dest,
                    )
            if ckpt is not None:
                await stage_manifest(
                    executor=executor,
                    store=self.store,
                    key=ckpt.manifest_key,
                    workspace=ws,
                    dest="resume",
                )

        accel = (execs[0].node.accelerator or env.accelerator) if execs else "cpu"
        tensorflow = spec.environment.framework == "tensorflow"
        # TensorFlow: one process drives every GPU of the node; its env has no torch for a
        # warm spare to import
        nproc = 1 if tensorflow else await self._procs_per_node(execs[0], accel)
        n = len(execs)
        spare: WarmSpare | None = None
        eligible = (
            ckpt is None
            and not tensorflow
            and self.warm.eligible(execs[0], task=spec.task, nnodes=n, nproc=nproc)
        )
        if eligible:
            local = execs[0]
            assert isinstance(local, LocalExecutor)
            spare = await self.warm.claim(local, local.python, workspace_of(local, run.run_id))
        try:
            await asyncio.gather(*(stage(e) for e in execs))
            if eligible:
                # the key's next spare: with this run's model code, once this run is going
                local = execs[0]
                assert isinstance(local, LocalExecutor)
                ws = workspace_of(local, run.run_id)
                await asyncio.to_thread(self.warm.remember_model, local, local.python, ws)
                progressed = self._first_progress.setdefault(run.run_id, asyncio.Event())
                self.warm.replenish(local, local.python, after=progressed)
            if spare is not None:
                try:
                    return [await self._start_warm(run, spec, accel, execs[0], spare)], 1
                except (BrokenPipeError, ConnectionResetError):  # it died since the claim
                    log.warning("warm spare of run %s gone; starting cold", run.run_id)
                    await self.warm.abandon(spare)
                    spare = None
        except BaseException:
            if (first := self._first_progress.pop(run.run_id, None)) is not None:
                first.set()
            if spare is not None:
                await asyncio.shield(self.warm.abandon(spare))
            raise
        rdzv = None
        if n > 1:
            rdzv = f"{execs[0].node.address}:{await execs[0].free_port()}"
        secrets: RunSecrets | None = None
        procs = []
        for rank, executor in enumerate(execs):
            ws = workspace_of(executor, run.run_id)
            variables = launch_env(
                workspace=ws,
                spec=spec,
                accelerator=accel,
                run_id=run.run_id,
                resume_step=ckpt.step if ckpt is not None else None,
                heartbeat_seconds=self._heartbeat_seconds(),
            )
            if n > 1 and executor.node.address in ("127.0.0.1", "localhost"):
                variables["GLOO_SOCKET_IFNAME"] = "lo"
            if secrets is None:  # the owner's secrets the spec lists: environment only
                secrets = await self._read_secrets(run, spec, reserved=set(variables))
            variables = {**secrets.env, **variables}
            plan = plan_launch(
                python=executor.python,
                workspace=ws,
                spec=spec,
                nnodes=n,
                node_rank=rank,
                nproc=nproc,
                rdzv=rdzv,
                run_id=run.run_id,
                env=variables,
            )
            try:
                procs.append(await executor.start(plan.argv, cwd=ws, env=plan.env))
            except Exception as exc:  # its message becomes the run's reason: no values
                message = secrets.redactor.redact(str(exc))
                if message != str(exc):
                    raise OSError(f"{type(exc).__name__}: {message}") from None
                raise
        return procs, n * nproc

    async def _read_secrets(self, run: Run, spec: ProjectSpec, *, reserved: set[str]) -> RunSecrets:
        """The owner's secrets the spec lists, kept (for redaction) while the run's job lives."""
        secrets = await asyncio.to_thread(
            read_run_secrets,
            self.runtime.secrets,
            owner_id=run.owner_id,
            names=spec.secrets,
            reserved=reserved,
            run_id=run.run_id,
        )
        self._secrets = {k: v for k, v in self._secrets.items() if k in self.jobs}
        self._secrets[run.run_id] = secrets
        return secrets

    async def _start_warm(
        self, run: Run, spec: ProjectSpec, accel: str, executor: NodeExecutor, spare: WarmSpare
    ) -> NodeProcess:
        """Start the run's one process in a claimed spare (:mod:`services.trainer.warm`):
        the same environment as a cold start, with the spare's folder as the workspace
        path inside the sandbox."""
        variables = launch_env(
            workspace=spare.folder,
            spec=spec,
            accelerator=accel,
            run_id=run.run_id,
            heartbeat_seconds=self._heartbeat_seconds(),
        )
        secrets = await self._read_secrets(run, spec, reserved=set(variables))
        plan = plan_launch(
            python=executor.python,
            workspace=spare.folder,
            spec=spec,
            nnodes=1,
            node_rank=0,
            nproc=1,
            rdzv=None,
            run_id=run.run_id,
            env={**secrets.env, **variables},
        )
        return await self.warm.start(
            spare,
            workspace=workspace_of(executor, run.run_id),
            script=plan.argv[-1],
            env=plan.env,
            threads=int(plan.env.get("OMP_NUM_THREADS") or 0),
        )

    def _heartbeat_seconds(self) -> float:
        """Heartbeats four times per node timeout: one late line is not a lost node."""
        return max(0.5, self.settings.trainer_node_timeout_seconds / 4)

    async def _procs_per_node(self, executor: NodeExecutor, accel: str) -> int:
        if accel != "cuda":
            return 1
        # nvidia-smi, not the run environment's torch: nothing a tenant installed into that
        # environment may run outside the sandbox with the platform's privileges.
        code, out, _ = await executor.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
        )
        gpus = [line for line in out.splitlines() if line.strip()] if code == 0 else []
        return max(1, len(gpus))

    def _back_to_staging(self, run_id: uuid.UUID) -> bool:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "training" or run.owner != self.instance:
                return False
            transition(session, run, to="staging", event=None, stage=self.runtime.stage)
            session.commit()
        return True

    def _to_training(
        self, run_id: uuid.UUID, started: TrainingStarted, pgids: dict[str, int]
    ) -> bool:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "staging" or run.owner != self.instance:
                return False
            transition(
                session,
                run,
                to="training",
                event=started,
                stage=self.runtime.stage,
                attempt=started.attempt,
                processes=pgids,
                workspace_cleaned=False,
            )
            session.commit()
        self.runtime.published()
        return True

    async def _monitor(
        self, run: Run, execs: list[NodeExecutor], procs: list[NodeProcess]
    ) -> tuple[Attempt, EventRelay]:
        secrets = self._secrets.pop(run.run_id, None) or RunSecrets()
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
        outcome = Attempt()
        progressed = self._first_progress.get(run.run_id)
        checkpoints: asyncio.Queue[tuple[NodeExecutor, int, str] | None] = asyncio.Queue()

        loop = asyncio.get_running_loop()
        last_line = {e.node.name: loop.time() for e in execs}
        beating: set[str] = set()

        async def pump(executor: NodeExecutor, proc: NodeProcess) -> int | None:
            async for line in proc.lines():
                last_line[executor.node.name] = loop.time()
                msg = parse_marker(line.text) if line.stream == "stdout" else None
                if msg is None:
                    relay.log(executor.node.name, line.stream, line.text)
                elif msg.get("event") == "heartbeat":
                    beating.add(executor.node.name)
                elif msg.get("event") == "progress":
                    relay.progress(msg)
                    if progressed is not None:
                        progressed.set()
                elif msg.get("event") == "checkpoint":
                    step, path = msg.get("step"), msg.get("path")
                    problem = checkpoint_path_problem(path)
                    if problem is None and isinstance(step, int):
                        await checkpoints.put((executor, step, str(path)))
                    else:
                        relay.log(
                            executor.node.name,
                            "stderr",
                            f"aidp: checkpoint of step {step!r} refused: {problem or 'bad step'}",
                        )
                elif msg.get("event") == "completed":
                    metrics = relay.redact(dict(msg.get("metrics") or {}))
                    outcome.completed = (execs.index(executor), metrics)
            code = await proc.wait()
            if proc.limit_hit:  # the sandbox killed it: say so in the log and the reason
                outcome.limit_hit = proc.limit_hit
                relay.log(executor.node.name, "stderr", f"aidp: the run hit {proc.limit_hit}")
            return code

        async def store_checkpoints() -> None:
            while (item := await checkpoints.get()) is not None:
                try:
                    await self._store_checkpoint(run, *item)
                except DiskFull as exc:  # later checkpoints and the model would fail too
                    outcome.disk_full = f"checkpoint of step {item[1]} not stored: {exc.message}"
                    relay.log(item[0].node.name, "stderr", f"aidp: {outcome.disk_full}")
                    await self._kill(execs, procs)
                    return
                except ProviderError as exc:  # refused (a symlink out) or node trouble
                    relay.log(
                        item[0].node.name,
                        "stderr",
                        f"aidp: checkpoint of step {item[1]} not stored: {exc}",
                    )
                except Exception:
                    log.exception("storing a checkpoint of run %s failed", run.run_id)

        async def watch() -> None:
            timeout = self.settings.trainer_node_timeout_seconds
            while True:
                await asyncio.sleep(self.settings.trainer_poll_seconds)
                state = await asyncio.to_thread(self._renew, run.run_id)
                if state is None or state == "cancelled":
                    outcome.cancelled = state == "cancelled"
                    outcome.lost_lease = state is None
                    await self._kill(execs, procs)
                    return
                now_ = loop.time()
                silent = {n for n in beating if now_ - last_line[n] > timeout}
                if silent:  # alive nodes send heartbeats: these stopped answering
                    outcome.silent = silent
                    await self._cut_off(execs, procs, silent, relay)
                    await self._end_pumps(run.run_id, silent)
                    return

        flusher = asyncio.ensure_future(relay.run())
        storer = asyncio.ensure_future(store_checkpoints())
        watcher = asyncio.ensure_future(watch())
        pumps = [asyncio.ensure_future(pump(e, p)) for e, p in zip(execs, procs, strict=True)]
        self._pumps[run.run_id] = dict(zip((e.node.name for e in execs), pumps, strict=True))
        try:
            results = await asyncio.gather(*pumps, return_exceptions=True)
            for result in results:  # a pump cut off from a silent node: no exit code
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
            outcome.codes = [r if isinstance(r, int) else None for r in results]
        except asyncio.CancelledError:
            await asyncio.shield(self._kill(execs, procs, grace=0))
            raise
        finally:
            self._pumps.pop(run.run_id, None)
            if (first := self._first_progress.pop(run.run_id, None)) is not None:
                first.set()  # no progress came: the spare need not wait any longer
            watcher.cancel()
            await checkpoints.put(None)
            await asyncio.gather(storer, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, watcher, return_exceptions=True)
        # torchrun gone: no stray worker may outlive it
        for executor, proc in zip(execs, procs, strict=True):
            await executor.kill_group(proc.pgid, signal.SIGKILL)
        return outcome, relay

    async def _cut_off(
        self,
        execs: list[NodeExecutor],
        procs: list[NodeProcess],
        silent: set[str],
        relay: EventRelay,
    ) -> None:
        """Drop the connections of ``silent`` nodes (their streams end) and stop the
        processes on the others: the attempt ends and the nodes are checked."""
        timeout = self.settings.trainer_node_timeout_seconds
        alive: list[tuple[NodeExecutor, NodeProcess]] = []
        for executor, proc in zip(execs, procs, strict=True):
            if executor.node.name not in silent:
                alive.append((executor, proc))
                continue
            relay.log(
                executor.node.name,
                "stderr",
                f"aidp: node {executor.node.name} sent nothing for {timeout:g} s"
                " (AIDP_TRAINER_NODE_TIMEOUT_SECONDS)",
            )
            await executor.abort()
        await self._kill([e for e, _ in alive], [p for _, p in alive])

    async def _end_pumps(self, run_id: uuid.UUID, silent: set[str]) -> None:
        """Give the streams of cut-off nodes the node timeout to end, then stop reading."""
        tasks = [t for n, t in self._pumps.get(run_id, {}).items() if n in silent]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.trainer_node_timeout_seconds)
        for task in pending:
            task.cancel()

    async def _kill(
        self, execs: list[NodeExecutor], procs: list[NodeProcess], grace: float | None = None
    ) -> None:
        """SIGTERM every process group, then SIGKILL after the grace period."""
        for executor, proc in zip(execs, procs, strict=True):
            await executor.kill_group(proc.pgid, signal.SIGTERM)
        await asyncio.sleep(self.settings.trainer_kill_grace_seconds if grace is None else grace)
        for executor, proc in zip(execs, procs, strict=True):
            await executor.kill_group(proc.pgid, signal.SIGKILL)

    async def _store_checkpoint(
        self, run: Run, executor: NodeExecutor, step: int, path: str
    ) -> None:
        ws = workspace_of(executor, run.run_id)
        root = posixpath.join(ws, path)
        await ensure_inside(executor, root, posixpath.join(ws, "checkpoints"))
        tree = await store_tree(
            executor=executor,
            store=self.store,
            root=root,
            source=f"aidp://checkpoints/{run.run_id}",
            revision=f"step-{step}",
            meta={"kind": "checkpoint", "run_id": str(run.run_id), "step": step},
        )
        await asyncio.to_thread(self._record_checkpoint, run.run_id, step, tree)
        await restore_missing(executor=executor, store=self.store, root=root, tree=tree)
        await executor.remove_tree(root)
        await asyncio.to_thread(
            prune_checkpoints,
            self.runtime.db,
            self.store,
            run_id=run.run_id,
            keep=self.settings.trainer_keep_checkpoints,
        )

    def _record_checkpoint(self, run_id: uuid.UUID, step: int, tree: StoredTree) -> None:
        with self.runtime.db.session() as session:
            session.add(
                Checkpoint(run_id=run_id, step=step, manifest_key=tree.key, size_bytes=tree.size)
            )
            record_created(session, tree.created)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                with self.runtime.db.session() as again:  # the step was stored before
                    record_created(again, tree.created)
                    again.commit()

    # -- outcome -------------------------------------------------------------------------

    async def _decide(
        self,
        run: Run,
        spec: ProjectSpec,
        execs: list[NodeExecutor],
        outcome: Attempt,
        relay: EventRelay,
    ) -> bool:
        tail = list(relay.stderr_tail)
        lost: list[str] = []
        if needs_node_check(outcome, tail):
            lost = await self._lost_nodes(execs, suspects=outcome.silent)
        names = [e.node.name for e in execs]
        decided = classify(
            outcome,
            tail,
            lost=lost,
            node_names=names,
            retry_larger_on_oom=spec.resources.retry_larger_on_oom,
        )
        if decided.note is not None:
            relay.log(decided.note[0], "stderr", decided.note[1])
            await relay.flush()
        if decided.verdict is Verdict.ABANDONED:
            return False
        if decided.verdict is Verdict.CANCELLED:
            await self.cleanup(run.run_id, execs)
            return False
        if decided.verdict is Verdict.FAILED:
            await asyncio.to_thread(self._finish_failed, run.run_id, decided.reason, None, False)
            await self.cleanup(run.run_id, execs)
            return False
        if decided.verdict is Verdict.COMPLETED:
            try:
                await self._complete(run, spec, execs, outcome)
            except DiskFull as exc:
                reason = f"the trained model was not stored: {exc.message}"
                await asyncio.to_thread(self._finish_failed, run.run_id, reason, None, False)
                await self.cleanup(run.run_id, execs)
            return False
        if decided.verdict is Verdict.REPLACE:
            return await self._replace_nodes(
                run.run_id,
                list(decided.nodes),
                decided.reason,
                launched=True,
                larger=decided.larger,
            )
        retry = await asyncio.to_thread(
            self._retry_or_fail, run.run_id, decided.reason, decided.exit_code, decided.retryable
        )
        if not retry:
            await self.cleanup(run.run_id, execs)
        return retry

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

    async def _replace_nodes(
        self,
        run_id: uuid.UUID,
        lost: list[str],
        reason: str,
        *,
        launched: bool,
        larger: bool = False,
    ) -> bool:
        """Ask the provisioner for replacements (NodeLost; ``larger``: every node on the
        run's next choice, after running out of memory) and leave the run ``replacing``
        (no job owns it until NodesReplaced); past the attempt budget the run fails."""
        await asyncio.to_thread(self._to_replacing, run_id, lost, reason, launched, larger)
        return False

    def _to_replacing(
        self, run_id: uuid.UUID, lost: list[str], reason: str, launched: bool, larger: bool
    ) -> None:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE or run.owner != self.instance:
                return
            spent = budget(
                run.attempt, launched=launched, max_attempts=self.settings.trainer_max_attempts
            )
            attempts = spent.attempts
            if not spent.retry:
                limit = self.settings.trainer_max_attempts
                final = f"{reason}; no launches left ({attempts} of {limit})"
                transition(
                    session,
                    run,
                    to="failed",
                    stage=self.runtime.stage,
                    reason=final,
                    event=TrainingFailed(reason=final, exit_code=None, retryable=True),
                    owner=None,
                    lease_until=None,
                )
            else:
                ckpt = latest_checkpoint(session, run_id)
                event = NodeLost(
                    nodes=lost,
                    reason=reason,
                    attempt=max(1, attempts),
                    resume_step=ckpt.step if ckpt is not None else None,
                    larger=larger,
                )
                transition(
                    session,
                    run,
                    to="replacing",
                    stage=self.runtime.stage,
                    event=event,
                    reason=reason,
                    attempt=attempts,
                    processes=None,
                    owner=None,
                    lease_until=None,
                )
            session.commit()
        self.runtime.published()

    def _retry_or_fail(
        self,
        run_id: uuid.UUID,
        reason: str,
        exit_code: int | None,
        retryable: bool,
        launched: bool = True,
    ) -> bool:
        """Back to ``staging`` for another launch, or ``failed`` for good. True = retry.

        ``launched`` False: the attempt failed before training started (it still counts).
        """
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE:
                return False
            spent = budget(
                run.attempt,
                launched=launched,
                max_attempts=self.settings.trainer_max_attempts,
                retryable=retryable,
            )
            attempts = spent.attempts
            if spent.retry:
                log.warning("run %s attempt %d: %s; retrying", run_id, attempts, reason)
                transition(
                    session,
                    run,
                    to="staging",
                    event=None,
                    stage=self.runtime.stage,
                    reason=reason,
                    attempt=attempts,
                )
                session.commit()
                return True
            transition(
                session,
                run,
                to="failed",
                stage=self.runtime.stage,
                reason=reason,
                event=TrainingFailed(reason=reason, exit_code=exit_code, retryable=retryable),
                owner=None,
                lease_until=None,
            )
            session.commit()
        self.runtime.published()
        return False

    def _finish_failed(
        self, run_id: uuid.UUID, reason: str, exit_code: int | None, retryable: bool
    ) -> None:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state not in ACTIVE:
                return
            transition(
                session,
                run,
                to="failed",
                stage=self.runtime.stage,
                reason=reason,
                event=TrainingFailed(reason=reason, exit_code=exit_code, retryable=retryable),
                owner=None,
                lease_until=None,
            )
            session.commit()
        self.runtime.published()

    async def _complete(
        self, run: Run, spec: ProjectSpec, execs: list[NodeExecutor], outcome: Attempt
    ) -> None:
        index, metrics = outcome.completed or (0, {})
        executor = execs[index]
        ws = workspace_of(executor, run.run_id)
        root = posixpath.join(ws, "output", "model")
        tree = await store_tree(
            executor=executor,
            store=self.store,
            root=root,
            source=f"aidp://models/{run.project_id}",
            revision=str(run.run_id),
            meta={"kind": "model", "run_id": str(run.run_id), "task": spec.task},
        )
        stored = tree
        adapter = await asyncio.to_thread(adapter_facts, self.store, tree)
        base_key = next((a["cache_key"] for a in run.artifacts or [] if a["kind"] == "model"), None)
        if adapter and not adapter["merged"] and base_key:  # a LoRA adapter: + base/ (adapters.py)
            tree = await asyncio.to_thread(with_base, self.store, tree, base_key)
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        deployment_id = await asyncio.to_thread(
            self._record_completion, run.run_id, tree, clean, spec.deploy, index, adapter
        )
        await restore_missing(executor=executor, store=self.store, root=root, tree=stored)
        if self.settings.trainer_drop_checkpoints_on_register:
            await asyncio.to_thread(
                prune_checkpoints, self.runtime.db, self.store, run_id=run.run_id, keep=0
            )
        if deployment_id is None:
            await self.cleanup(run.run_id, execs)
        elif self.on_deploy is not None:
            await self.on_deploy(deployment_id)

    def _record_completion(
        self,
        run_id: uuid.UUID,
        tree: StoredTree,
        metrics: dict[str, float],
        deploy: DeploySpec,
        node_index: int,
        adapter: dict[str, Any] | None = None,
    ) -> uuid.UUID | None:
        key = tree.key
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.state != "training":
                return None
            record_created(session, tree.created)
            model = register_model(
                session,
                run=run,
                manifest_key=key,
                size_bytes=tree.size,
                metrics=metrics,
                adapter=adapter,
            )
            transition(
                session,
                run,
                to="succeeded",
                stage=self.runtime.stage,
                event=TrainingCompleted(model_version=str(model.id), metrics=metrics, digest=key),
                model_id=model.id,
                owner=None,
                lease_until=None,
            )
            deployment_id = None
            if deploy.enabled and run.project_id is not None:
                transition(session, run, to="deploying", event=None, stage=self.runtime.stage)
                node = (run.nodes or [])[node_index]
                deployment = Deployment(
                    project_id=run.project_id,
                    model_id=model.id,
                    run_id=run.run_id,
                    node=node,
                    workdir=posixpath.join(node["workdir"], f"aidp-run-{run.run_id}"),
                    replicas=deploy.replicas,
                    idle_timeout_s=deploy.idle_timeout_s,
                    keep_previous=deploy.keep_previous,
                    promote_on_ready=True,
                )
                session.add(deployment)
                deployment_id = deployment.id
            session.commit()
        self.runtime.published()
        return deployment_id

    async def cleanup(self, run_id: uuid.UUID, execs: list[NodeExecutor] | None = None) -> None:
        """Remove the run's workspace (all plaintext) from its nodes. Best effort."""
        run, _ = await asyncio.to_thread(self._load, run_id)
        own = execs is None
        execs = execs if execs is not None else self.executors(run.nodes or [], run_id)
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
        await asyncio.to_thread(self._mark_cleaned, run_id)

    def _mark_cleaned(self, run_id: uuid.UUID) -> None:
        with self.runtime.db.session() as session:
            run = session.get(Run, run_id)
            if run is not None:
                run.workspace_cleaned = True
                session.add(run)
                session.commit()
