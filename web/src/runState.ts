// Folding a project's event stream (docs/design.md §3) into the live state of each run.
import type { Envelope, RunStatus, StoredEvent } from "./api";

export type StageName = "fetching" | "provisioning" | "training" | "deploying";
// "stopped": the stage was running when the run ended another way (cancelled, or another
// stage failed); its timer stops there.
export type StageStatus = "pending" | "active" | "done" | "failed" | "skipped" | "stopped";

export interface Stage {
  status: StageStatus;
  startedAt?: number; // ms since epoch
  endedAt?: number;
  detail?: string;
}

export interface FetchState {
  done: number;
  total: number | null;
  cached: boolean;
}

export interface LogLine {
  seq: number;
  node: string;
  stream: string;
  text: string;
}

export interface RunView {
  runId: string;
  status: RunStatus;
  deployEnabled: boolean;
  stages: Record<StageName, Stage>;
  fetch: Record<string, FetchState>;
  provisioning: { stage: string; message: string; percent: number | null } | null;
  step: number;
  totalSteps: number | null;
  epoch: number | null;
  loss: number | null;
  losses: [number, number][];
  /** validation figures reported during training (eval_loss, eval_accuracy, eval_f1…): step → value */
  evals: Record<string, [number, number][]>;
  samplesPerSec: number | null;
  etaSeconds: number | null;
  logs: LogLine[];
  modelVersion: string | null;
  metrics: Record<string, number>;
  deploymentId: string | null;
  endpoint: string | null;
  reason: string | null;
  notes: string[];
  lastSeq: number;
}

const FINAL: RunStatus[] = ["deployed", "succeeded", "failed", "cancelled"];
export const isFinal = (s: RunStatus | null | undefined): boolean => !!s && FINAL.includes(s);
export const MAX_LOG_LINES = 2000;

export function newRunView(runId: string): RunView {
  const pending = (): Stage => ({ status: "pending" });
  return {
    runId,
    status: "queued",
    deployEnabled: false,
    stages: { fetching: pending(), provisioning: pending(), training: pending(), deploying: pending() },
    fetch: {},
    provisioning: null,
    step: 0,
    totalSteps: null,
    epoch: null,
    loss: null,
    losses: [],
    evals: {},
    samplesPerSec: null,
    etaSeconds: null,
    logs: [],
    modelVersion: null,
    metrics: {},
    deploymentId: null,
    endpoint: null,
    reason: null,
    notes: [],
    lastSeq: 0,
  };
}

/** One key per artifact: "hf://org/name@main" and the cached "hf://org/name" are the same. */
export function sourceKey(source: string): string {
  return /^(hf|kaggle):\/\//.test(source) ? source.replace(/@[^@/]*$/, "") : source;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;
export const stripAnsi = (text: string): string => text.replace(ANSI, "");

function start(stage: Stage, at: number): void {
  if (stage.status === "pending") {
    stage.status = "active";
    stage.startedAt = at;
  }
}

function finish(stage: Stage, at: number, status: StageStatus = "done"): void {
  if (stage.status === "pending") stage.startedAt = at;
  if (stage.status !== "done" && stage.status !== "failed") {
    stage.status = status;
    stage.endedAt = at;
  }
}

function advance(view: RunView, status: RunStatus): void {
  if (!isFinal(view.status)) view.status = status;
}

const TRAINING_NOTE = "Training started on ";

/** The run ended (`status`, final): stages still running stop, live-only figures go. */
function settle(view: RunView, at: number): void {
  for (const st of Object.values(view.stages)) {
    if (st.status === "active") finish(st, at, "stopped");
    else if (st.status === "pending" && view.status === "cancelled") st.status = "skipped";
  }
  view.etaSeconds = null;
  view.samplesPerSec = null;
  view.notes = view.notes.filter((n) => !n.startsWith(TRAINING_NOTE));
}

/** Events that still change a run after it ended (logs arrive late; a later deploy). */
const AFTER_END = new Set(["TrainingLog", "ModelDeployed"]);

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Apply one envelope to `view` (mutates it). Events of other runs must be filtered first. */
export function applyEvent(view: RunView, env: Envelope, seq: number): void {
  const p = env.payload ?? {};
  const at = Date.parse(env.occurred_at) || Date.now();
  const s = view.stages;
  view.lastSeq = Math.max(view.lastSeq, seq);
  if (isFinal(view.status) && !AFTER_END.has(env.type)) return; // a final status is sticky
  switch (env.type) {
    case "ProjectCreated":
    case "RunRequested": {
      const spec = (p.spec ?? {}) as { deploy?: { enabled?: boolean }; dataset?: string | null };
      view.deployEnabled = !!spec.deploy?.enabled;
      if (!view.deployEnabled) s.deploying.status = "skipped";
      break;
    }
    case "FetchProgress": {
      advance(view, "preparing");
      start(s.fetching, at);
      const src = sourceKey(String(p.source));
      const prev = view.fetch[src];
      view.fetch[src] = { done: num(p.bytes_done) ?? 0, total: num(p.bytes_total), cached: prev?.cached ?? false };
      break;
    }
    case "CachedRevisionUsed": {
      advance(view, "preparing");
      const rev = String(p.resolved_revision ?? "").slice(0, 12);
      view.notes.push(`Warning: ${String(p.source)} fetched at its cached revision ${rev} (${String(p.reason ?? "")})`);
      break;
    }
    case "ArtifactsCached": {
      advance(view, "preparing");
      for (const a of (p.artifacts ?? []) as { source: string; size_bytes: number }[]) {
        view.fetch[sourceKey(a.source)] = { done: a.size_bytes, total: a.size_bytes, cached: true };
      }
      finish(s.fetching, at);
      break;
    }
    case "ProvisioningProgress":
      advance(view, "preparing");
      start(s.provisioning, at);
      view.provisioning = { stage: String(p.stage ?? ""), message: String(p.message ?? ""), percent: num(p.percent) };
      s.provisioning.detail = String(p.stage ?? "");
      break;
    case "NodesReady":
      advance(view, "preparing");
      finish(s.provisioning, at);
      view.provisioning = { stage: "ready", message: "", percent: 100 };
      break;
    case "TrainingStarted":
      advance(view, "training");
      finish(s.fetching, at);
      finish(s.provisioning, at);
      start(s.training, at);
      view.notes.push(`${TRAINING_NOTE}${p.world_size ?? 1} process(es)`);
      break;
    case "TrainingProgress": {
      advance(view, "training");
      start(s.training, at);
      view.step = num(p.step) ?? view.step;
      view.totalSteps = num(p.total_steps) ?? view.totalSteps;
      view.epoch = num(p.epoch) ?? view.epoch;
      view.samplesPerSec = num(p.samples_per_sec);
      view.etaSeconds = num(p.eta_seconds);
      const loss = num(p.loss);
      if (loss !== null) {
        view.loss = loss;
        view.losses.push([view.step, loss]);
      }
      for (const [name, value] of Object.entries((p.metrics ?? {}) as Record<string, unknown>)) {
        const v = num(value);
        if (v === null || !name.startsWith("eval_")) continue;
        const series = (view.evals[name] ??= []);
        if (series.length === 0 || series[series.length - 1][0] !== view.step) series.push([view.step, v]);
      }
      break;
    }
    case "TrainingLog": {
      const lines = (p.lines ?? []) as string[];
      for (const text of lines) {
        view.logs.push({ seq, node: String(p.node ?? ""), stream: String(p.stream ?? "stdout"), text: stripAnsi(text) });
      }
      if (view.logs.length > MAX_LOG_LINES) view.logs.splice(0, view.logs.length - MAX_LOG_LINES);
      break;
    }
    case "TrainingCompleted":
      finish(s.training, at);
      view.modelVersion = String(p.model_version ?? "");
      view.metrics = (p.metrics ?? {}) as Record<string, number>;
      view.notes = view.notes.filter((n) => !n.startsWith(TRAINING_NOTE));
      view.etaSeconds = null;
      if (view.deployEnabled) {
        advance(view, "deploying");
        start(s.deploying, at);
      } else {
        advance(view, "succeeded");
        settle(view, at);
      }
      break;
    case "ModelDeployed":
      view.deploymentId = String(p.deployment_id);
      view.endpoint = String(p.endpoint ?? "");
      if (isFinal(view.status)) break; // a later deploy of this run's model
      finish(s.deploying, at);
      advance(view, "deployed");
      settle(view, at);
      break;
    case "ArtifactsFailed":
    case "ValidationFailed":
    case "NodesFailed":
    case "TrainingFailed":
    case "DeploymentFailed": {
      const reason = String(p.reason ?? "failed");
      if (p.retryable) {
        view.notes.push(`${env.type}: ${reason} (retrying)`);
        break;
      }
      const stage: StageName =
        env.type === "ArtifactsFailed" || env.type === "ValidationFailed"
          ? "fetching"
          : env.type === "NodesFailed"
            ? "provisioning"
            : env.type === "TrainingFailed"
              ? "training"
              : "deploying";
      finish(s[stage], at, "failed");
      view.reason = reason;
      advance(view, "failed");
      settle(view, at);
      break;
    }
    case "RunCancelled":
      advance(view, "cancelled");
      settle(view, at);
      break;
    default:
      break;
  }
}

/** Fold stored events into a map run id → view. */
export function foldRuns(events: StoredEvent[]): Map<string, RunView> {
  const runs = new Map<string, RunView>();
  for (const { seq, event } of events) {
    if (!event.run_id) continue;
    let view = runs.get(event.run_id);
    if (!view) runs.set(event.run_id, (view = newRunView(event.run_id)));
    applyEvent(view, event, seq);
  }
  return runs;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
