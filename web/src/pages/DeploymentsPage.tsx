// Deployments of the caller's projects (issue 16): state, model version, replicas, which one
// is its project's live endpoint; stop (asks first), start, promote, roll back.
import { useCallback, useEffect, useState } from "react";
import { api, items } from "../api";
import { ErrorBanner, Spinner, timeAgo } from "../components/ui";

export interface DeploymentRow {
  id: string;
  project_id: string;
  project_name: string | null;
  role: string | null;
  model_id: string | null;
  model_version: number | null;
  status: string;
  endpoint: string | null;
  replicas: number;
  replicas_up: number;
  idle_timeout_s: number | null;
  live: boolean;
  reason: string | null;
  created_at: string | null;
  last_request_at: string | null;
}

const SERVING = new Set(["starting", "running", "restarting", "waking", "idle"]);
const STATUS_TEXT: Record<string, string> = {
  idle: "scaled to zero",
  waking: "starting again",
};

function canEdit(d: DeploymentRow): boolean {
  return d.role === "owner" || d.role === "editor";
}

export function DeploymentsPage() {
  const [rows, setRows] = useState<DeploymentRow[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = useCallback(
    () =>
      api.get("/api/deployments").then(
        (b) => (setRows(items<DeploymentRow>(b)), setError(null)),
        setError,
      ),
    [],
  );
  useEffect(() => {
    void load();
    const timer = window.setInterval(() => void load(), 3000);
    return () => window.clearInterval(timer);
  }, [load]);

  async function act(d: DeploymentRow, action: "stop" | "start" | "promote", done: string) {
    setBusy(d.id);
    setError(null);
    try {
      await api.post(`/api/deployments/${d.id}/${action}`);
      setNotice(done);
      setConfirming(null);
      await load();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  }

  async function rollback(projectId: string, name: string) {
    setError(null);
    try {
      await api.post(`/api/projects/${projectId}/endpoint/rollback`);
      setNotice(`${name}: rolling back to the deployment that was live before.`);
      await load();
    } catch (err) {
      setError(err);
    }
  }

  const label = (d: DeploymentRow) => `${d.project_name ?? "project"} v${d.model_version ?? "?"}`;
  const projectsWithHistory = new Set(
    (rows ?? []).filter((d) => !d.live && canEdit(d)).map((d) => d.project_id),
  );

  return (
    <main className="page deployments-page">
      <h1>Deployments</h1>
      <p className="muted">
        Each model version you deploy runs here. A project has one <strong>live</strong> deployment: its endpoint{" "}
        <code>/api/projects/&lt;id&gt;/endpoint/predict</code> forwards to it. A new version takes over once it runs and the one it
        replaces stops, unless it was deployed with <code>keep_previous</code>.
      </p>
      <ErrorBanner error={error} onRetry={() => void load()} />
      {notice && (
        <p className="ok" role="status" data-testid="notice">
          {notice}
        </p>
      )}
      {rows === null && !error && <Spinner />}
      {rows !== null && rows.length === 0 && (
        <p className="muted" data-testid="no-deployments">
          No deployments yet. Enable <em>deploy</em> in a project's spec, or deploy a model version from its project page.
        </p>
      )}
      {rows !== null && rows.length > 0 && (
        <div className="card table-wrap">
          <table className="table" data-testid="deployments">
            <thead>
              <tr>
                <th scope="col">Project</th>
                <th scope="col">Version</th>
                <th scope="col">Status</th>
                <th scope="col">Replicas</th>
                <th scope="col">Scale to zero</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <tr key={d.id} data-deployment={d.id} data-status={d.status}>
                  <td className="break">
                    <a href={`#/projects/${d.project_id}`}>{d.project_name ?? d.project_id}</a>{" "}
                    {d.live && (
                      <span className="badge badge-running" data-testid="live" title="The project's endpoint serves this deployment">
                        live
                      </span>
                    )}
                    <div className="muted small mono break" title={d.id}>
                      {d.id}
                    </div>
                  </td>
                  <td>v{d.model_version ?? "?"}</td>
                  <td>
                    <span className={`badge badge-${d.status}`}>{STATUS_TEXT[d.status] ?? d.status}</span>
                    {d.reason && d.status !== "running" && <div className="muted small break">{d.reason}</div>}
                  </td>
                  <td>
                    {d.status === "running" ? d.replicas_up : 0}/{d.replicas}
                  </td>
                  <td>{d.idle_timeout_s ? `after ${d.idle_timeout_s}s idle` : "never"}</td>
                  <td title={d.created_at ?? ""}>{timeAgo(d.created_at)}</td>
                  <td>
                    {canEdit(d) && (
                      <span className="actions">
                        {SERVING.has(d.status) &&
                          (confirming === d.id ? (
                            <span className="actions confirm" role="group" aria-label={`Confirm stopping ${label(d)}`}>
                              <span className="small">{d.live ? "Stop the live endpoint?" : "Stop this deployment?"}</span>
                              <button
                                type="button"
                                className="btn btn-small btn-danger"
                                disabled={busy === d.id}
                                onClick={() => void act(d, "stop", `${label(d)} stopped.`)}
                              >
                                Stop
                              </button>
                              <button type="button" className="btn btn-small btn-ghost" onClick={() => setConfirming(null)}>
                                Keep running
                              </button>
                            </span>
                          ) : (
                            <button
                              type="button"
                              className="btn btn-small btn-ghost"
                              onClick={() => setConfirming(d.id)}
                              aria-label={`Stop ${label(d)}`}
                            >
                              Stop…
                            </button>
                          ))}
                        {(d.status === "stopped" || d.status === "failed") && (
                          <button
                            type="button"
                            className="btn btn-small"
                            disabled={busy === d.id}
                            onClick={() => void act(d, "start", `${label(d)} is starting.`)}
                            aria-label={`Start ${label(d)}`}
                          >
                            Start
                          </button>
                        )}
                        {!d.live && (
                          <button
                            type="button"
                            className="btn btn-small"
                            disabled={busy === d.id}
                            onClick={() =>
                              void act(
                                d,
                                "promote",
                                d.status === "running" || d.status === "idle"
                                  ? `${label(d)} is now the live endpoint.`
                                  : `${label(d)} becomes the live endpoint once it runs.`,
                              )
                            }
                            aria-label={`Make ${label(d)} live`}
                          >
                            Make live
                          </button>
                        )}
                        {d.live && projectsWithHistory.has(d.project_id) && (
                          <button
                            type="button"
                            className="btn btn-small btn-ghost"
                            onClick={() => void rollback(d.project_id, d.project_name ?? "project")}
                            aria-label={`Roll back ${d.project_name ?? "project"}`}
                          >
                            Roll back
                          </button>
                        )}
                      </span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}
