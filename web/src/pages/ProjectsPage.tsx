// Your projects, with live status badges (polled; the project page streams over the WebSocket).
import { useCallback, useEffect, useState } from "react";
import { api, items, type Project } from "../api";
import { ErrorBanner, Spinner, StatusBadge, timeAgo } from "../components/ui";
import { isFinal } from "../runState";
import { MyInvitations } from "./Invitations";

export function ProjectsPage() {
  const [projects, setProjects] = useState<Project[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  const load = useCallback(async () => {
    try {
      setProjects(items<Project>(await api.get("/api/projects")));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, []);

  const busy = !!projects?.some((p) => p.status && !isFinal(p.status));
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => {
    const timer = window.setInterval(() => void load(), busy ? 2000 : 8000);
    const onFocus = () => void load();
    window.addEventListener("focus", onFocus);
    return () => {
      window.clearInterval(timer);
      window.removeEventListener("focus", onFocus);
    };
  }, [load, busy]);

  return (
    <main className="page">
      <div className="page-head">
        <h1>Projects</h1>
        <a className="btn btn-primary" href="#/new">
          + New project
        </a>
      </div>
      <ErrorBanner error={error} onRetry={() => void load()} />
      <MyInvitations onJoined={() => void load()} />
      {projects === null && !error && <Spinner label="Loading projects…" />}
      {projects?.length === 0 && (
        <div className="card empty">
          <h2>Train your first model</h2>
          <p>
            A project is a model + a dataset + a little configuration. aidp does the rest: it downloads and caches them, sets up
            compute, trains while you watch, and deploys an endpoint.
          </p>
          <a className="btn btn-primary" href="#/new">
            Create a project
          </a>
        </div>
      )}
      {projects && projects.length > 0 && (
        <ul className="project-list" aria-label="Your projects">
          {projects.map((p) => (
            <li key={p.id} className="card project-item" data-project={p.name}>
              <a href={`#/projects/${p.id}`} className="project-link">
                <span className="project-name">{p.name}</span>
                <span className="muted mono ellipsis">{String(p.spec?.model ?? "")}</span>
              </a>
              <StatusBadge status={p.status} />
              <span className="muted small">
                {p.role} · updated {timeAgo(p.updated_at)}
              </span>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}
