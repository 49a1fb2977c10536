"""Launching one attempt of a run: stage the nodes, then start the training processes.

A first attempt of a built-in task on one local node may start in a warm spare
(:mod:`services.trainer.warm`): a process that already imported torch and the task's
modules, claimed before staging and handed the run's script once staged; the key's next
spare starts once this run sent its first progress. Everything else starts cold: torchrun
(or the task script directly, :mod:`services.trainer.training.plan`) on every node, ranks
rendezvousing at the first node for several nodes. The run owner's secrets the spec lists
join the environment; an error starting a process is redacted before it becomes the run's
reason. What the monitor of the same run needs (the secrets for redaction, the event its
first progress sets) is left in :class:`Handoff`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Container
from dataclasses import dataclass, field

from services.trainer.models import Checkpoint, Run
from services.trainer.nodes.base import NodeExecutor, NodeProcess
from services.trainer.nodes.local import LocalExecutor
from services.trainer.redaction import RunSecrets, read_run_secrets
from services.trainer.settings import TrainerSettings
from services.trainer.staging import workspace_of
from services.trainer.training.plan import launch_env, plan_launch
from services.trainer.training.stage import stage_run
from services.trainer.warm import WarmPool, WarmSpare
from shared.events import EnvInfo
from shared.runtime import ServiceRuntime
from shared.spec import ProjectSpec
from shared.store import ArtifactStore

__all__ = ["Handoff", "Launcher", "heartbeat_seconds"]

log = logging.getLogger(__name__)


def heartbeat_seconds(settings: TrainerSettings) -> float:
    """Heartbeats four times per node timeout: one late line is not a lost node."""
    return max(0.5, settings.trainer_node_timeout_seconds / 4)


@dataclass
class Handoff:
    """What a launch leaves for the monitor of the same run."""

    #: the owner's secrets of each launched run, until monitored (redaction)
    secrets: dict[uuid.UUID, RunSecrets] = field(default_factory=dict)
    #: set at a run's first progress: the warm pool starts the next spare then
    first_progress: dict[uuid.UUID, asyncio.Event] = field(default_factory=dict)

    def progressed(self, run_id: uuid.UUID) -> None:
        """No progress need be awaited any longer for this run (it came, or never will)."""
        if (first := self.first_progress.pop(run_id, None)) is not None:
            first.set()


class Launcher:
    """Stages and starts the processes of one attempt."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        settings: TrainerSettings,
        store: ArtifactStore,
        warm: WarmPool,
        handoff: Handoff,
        jobs: Container[uuid.UUID],
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.warm = warm
        self.handoff = handoff
        self.jobs = jobs  #: the runs with a job here (secrets of others are dropped)

    async def launch(
        self,
        run: Run,
        spec: ProjectSpec,
        env: EnvInfo,
        execs: list[NodeExecutor],
        ckpt: Checkpoint | None,
    ) -> tuple[list[NodeProcess], int]:
        """Stage and start every node's process; returns them and the world size."""
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
            await stage_run(store=self.store, run=run, spec=spec, execs=execs, ckpt=ckpt)
            if eligible:
                # the key's next spare: with this run's model code, once this run is going
                local = execs[0]
                assert isinstance(local, LocalExecutor)
                ws = workspace_of(local, run.run_id)
                await asyncio.to_thread(self.warm.remember_model, local, local.python, ws)
                progressed = self.handoff.first_progress.setdefault(run.run_id, asyncio.Event())
                self.warm.replenish(local, local.python, after=progressed)
            if spare is not None:
                try:
                    return [await self._start_warm(run, spec, accel, execs[0], spare)], 1
                except (BrokenPipeError, ConnectionResetError):  # it died since the claim
                    log.warning("warm spare of run %s gone; starting cold", run.run_id)
                    await self.warm.abandon(spare)
                    spare = None
        except BaseException:
            self.handoff.progressed(run.run_id)
            if spare is not None:
                await asyncio.shield(self.warm.abandon(spare))
            raise
        return await self._start_cold(run, spec, accel, execs, ckpt, nproc)

    async def _start_cold(
        self,
        run: Run,
        spec: ProjectSpec,
        accel: str,
        execs: list[NodeExecutor],
        ckpt: Checkpoint | None,
        nproc: int,
    ) -> tuple[list[NodeProcess], int]:
        n = len(execs)
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
                heartbeat_seconds=heartbeat_seconds(self.settings),
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
        kept = {k: v for k, v in self.handoff.secrets.items() if k in self.jobs}
        self.handoff.secrets.clear()
        self.handoff.secrets.update(kept)
        self.handoff.secrets[run.run_id] = secrets
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
            heartbeat_seconds=heartbeat_seconds(self.settings),
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
