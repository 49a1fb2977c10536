// One project, live over the WebSocket: pipeline, metrics, loss chart, logs, runs, models,
// deployment, members.
import { useCallback, useEffect, useMemo, useState } from "react";
import { api, ApiError, items, type ModelVersion, type Project, type Run } from "../api";
import { ChatBox, LLM_TASKS } from "../components/ChatBox";
import { LogPanel } from "../components/LogPanel";
import { EvalMetrics } from "../components/EvalMetrics";
import { LossChart } from "../components/LossChart";
import { Pipeline } from "../components/Pipeline";
import { RunCompare } from "../components/RunCompare";
import { SpecPanel } from "../components/SpecPanel";
import { WebhooksPanel } from "../components/WebhooksPanel";
import { PreflightReport } from "../components/PreflightReport";
import { ErrorBanner, Spinner, StatusBadge } from "../components/ui";
import { foldRuns, formatDuration, isFinal, newRunView } from "../runState";
import { useProjectEvents } from "../ws";
import { DeleteProject, DeploymentPanel, Members, Models, RunHistory } from "./projectParts";

function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, [active]);
  return now;
}

export function ProjectPage({ projectId }: { projectId: string }) {
  const [project, setProject] = useState<Project | null>(null);
  const [runs, setRuns] = useState<Run[]>([]);
  const [models, setModels] = useState<ModelVersion[]>([]);
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const { events, state, error: streamError } = useProjectEvents(projectId);

  const load = useCallback(async () => {
    try {
      const [p, r] = await Promise.all([
        api.get<Project>(`/api/projects/${projectId}`),
        api.get(`/api/projects/${projectId}/runs`).then((b) => items<Run>(b)),
      ]);
      setProject(p);
      setRuns([...r].sort((a, b) => b.number - a.number));
      setError(null);
      api.get(`/api/projects/${projectId}/models`).then(
        (b) => setModels(items<ModelVersion>(b)),
        () => undefined, // models appear later; the section says so
      );
    } catch (err) {
      setError(err);
    }
  }, [projectId]);

  useEffect(() => {
    void load();
  }, [load]);

  // Milestone events change runs, models and the project's status: reload those.
  const milestones = useMemo(
    () =>
      events.filter((e) =>
        ["RunRequested", "TrainingCompleted", "ModelDeployed", "TrainingFailed", "NodesFailed", "ArtifactsFailed", "ValidationFailed", "DeploymentFailed", "RunCancelled"].includes(
          e.event.type,
        ),
      ).length,
    [events],
  );
  useEffect(() => {
    if (milestones) void load();
  }, [milestones, load]);

  const views = useMemo(() => foldRuns(events), [events]);
  const runId = selected ?? project?.current_run_id ?? runs[0]?.id ?? null;
  const run = runs.find((r) => r.id === runId) ?? null;
  const view = (runId && views.get(runId)) || newRunView(runId ?? "");
  // The server's derived status is authoritative once final, or before any event arrived.
  const status = run && (isFinal(run.status) || view.lastSeq === 0) ? run.status : view.status;
  const live = !!run && !isFinal(status);
  const now = useNow(live);
  const canEdit = project?.role === "owner" || project?.role === "editor";
  // the project's live endpoint first (a later run's deployment may have replaced this one)
  const [liveId, setLiveId] = useState<string | null>(null);
  useEffect(() => {
    api.get<{ deployment_id: string | null }>(`/api/projects/${projectId}/endpoint`).then(
      (e) => setLiveId(e.deployment_id),
      () => setLiveId(null),
    );
  }, [projectId, view.deploymentId]);
  const deploymentId = liveId ?? view.deploymentId ?? run?.deployment_id ?? null;

  // Re-run with the stored spec. If another member changed it since this user wrote or
  // approved it, the gateway answers 409 spec_changed with the diff: show it and start
  // again with confirm_spec_hash only if the user agrees (the run uses their credentials).
  async function startRun() {
    const path = `/api/projects/${projectId}/runs`;
    try {
      await api.post(path, {});
    } catch (err) {
      const d = err instanceof ApiError && err.code === "spec_changed" ? err.details : undefined;
      if (!d || typeof d.spec_hash !== "string") throw err;
      const who = typeof d.changed_by_email === "string" && d.changed_by_email ? d.changed_by_email : "Another member";
      const ok = window.confirm(
        `${who} changed this project's spec since you last wrote or approved it. ` +
          `The run will use YOUR credentials and secrets.\n\n${typeof d.diff === "string" ? d.diff : ""}\nRun this spec?`,
      );
      if (!ok) return;
      await api.post(path, { confirm_spec_hash: d.spec_hash });
    }
    setSelected(null);
  }

  async function act(fn: () => Promise<unknown>) {
    setActionError(null);
    try {
      await fn();
      await load();
    } catch (err) {
      setActionError(err);
    }
  }

  if (error && !project) {
    return (
      <main className="page">
        <ErrorBanner error={error} onRetry={() => void load()} />
        <a href="#/">← Back to projects</a>
      </main>
    );
  }
  if (!project) return <main className="page"><Spinner label="Loading project…" /></main>;

  return (
    <main className="page">
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href="#/">Projects</a> / <span>{project.name}</span>
      </nav>
      <div className="page-head">
        <h1>
          {project.name} {run && <span className="muted">· run {run.number}</span>}
        </h1>
        <div className="actions">
          <span className={`conn conn-${state}`} role="status" title="Live connection">
            {state === "live" ? "● live" : state === "closed" ? "○ offline" : "◌ connecting…"}
          </span>
          <StatusBadge status={status} />
          {canEdit && run && !isFinal(status) && (
            <button type="button" className="btn btn-danger btn-small" onClick={() => act(() => api.post(`/api/runs/${run.id}/cancel`))}>
              Cancel run
            </button>
          )}
          {canEdit && (
            <button type="button" className="btn btn-small" onClick={() => act(startRun)}>
              ↻ Re-run
            </button>
          )}
        </div>
      </div>
      <ErrorBanner error={actionError} />
      <ErrorBanner error={error} onRetry={() => void load()} />
      {streamError && <ErrorBanner error={streamError} />}
      {(view.reason || run?.error) && status === "failed" && (
        <div className="banner banner-error" role="alert" data-testid="failure">
          <strong>Run failed:</strong> {view.reason ?? run?.error}
        </div>
      )}
      {view.notes.length > 0 && <p className="small muted">{view.notes[view.notes.length - 1]}</p>}

      <section className="card" aria-labelledby="pipeline-title">
        <h2 id="pipeline-title">Pipeline</h2>
        <Pipeline view={view} now={now} />
      </section>

      <PreflightReport events={events} runId={runId} />

      <div className="grid-2">
        <section className="card" aria-labelledby="training-title">
          <h2 id="training-title">Training</h2>
          <dl className="stats" data-testid="training-stats">
            <div>
              <dt>Step</dt>
              <dd data-testid="step">
                {view.step}
                {view.totalSteps ? ` / ${view.totalSteps}` : ""}
              </dd>
            </div>
            <div>
              <dt>Loss</dt>
              <dd>{view.loss === null ? "–" : view.loss.toFixed(4)}</dd>
            </div>
            <div>
              <dt>Samples/s</dt>
              <dd>{view.samplesPerSec === null ? "–" : view.samplesPerSec.toFixed(1)}</dd>
            </div>
            <div>
              <dt>ETA</dt>
              <dd>{status === "succeeded" || status === "deployed" ? "done" : isFinal(status) ? "–" : formatDuration(view.etaSeconds)}</dd>
            </div>
          </dl>
          <LossChart points={view.losses} totalSteps={view.totalSteps} evalPoints={view.evals.eval_loss} />
          <EvalMetrics evals={view.evals} totalSteps={view.totalSteps} />
        </section>
        <section className="card" aria-labelledby="logs-title">
          <h2 id="logs-title">Logs</h2>
          <LogPanel lines={view.logs} runId={runId} />
        </section>
      </div>

      {deploymentId && <DeploymentPanel deploymentId={deploymentId} canEdit={canEdit} />}
      {deploymentId && LLM_TASKS.includes(String(project.spec.task)) && (
        <ChatBox deploymentId={deploymentId} canEdit={canEdit} />
      )}

      <div className="grid-2">
        <RunHistory
          runs={runs.map((r) => {
            const v = views.get(r.id);
            return v && !isFinal(r.status) && v.lastSeq > 0 ? { ...r, status: v.status } : r;
          })}
          selected={runId}
          onSelect={setSelected}
          canEdit={canEdit}
          onRerun={() => act(startRun)}
          onCancel={(id) => act(() => api.post(`/api/runs/${id}/cancel`))}
        />
        <Models models={models} canEdit={canEdit} onDeployed={() => void load()} />
      </div>

      <div className="grid-2">
        <Members project={project} />
        <SpecPanel
          project={project}
          runId={runId}
          runNumber={run?.number ?? null}
          canEdit={canEdit}
          onSaved={load}
          onRun={() => act(startRun)}
        />
      </div>
      <RunCompare runs={runs} models={models} />
      {canEdit && <WebhooksPanel projectId={project.id} />}
      <DeleteProject project={project} />
    </main>
  );
}
