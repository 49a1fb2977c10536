// The spec panel of a project: the spec of the run being viewed (its stored snapshot), an
// editor (YAML, checked by the server as you type: errors with paths, a diff against the
// latest run's spec), save / save and re-run, and clone into a new project.
import { useEffect, useRef, useState } from "react";
import { parse, stringify } from "yaml";
import { api, type Project } from "../api";
import { ErrorBanner } from "./ui";

interface SpecError {
  path: string;
  message: string;
  line?: number | null;
}

interface Check {
  valid: boolean;
  errors: SpecError[];
  spec: Record<string, unknown> | null;
  diff: string | null;
}

function toYaml(spec: unknown): string {
  return stringify(spec ?? {}, { lineWidth: 0 });
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function DiffView({ diff, label }: { diff: string; label: string }) {
  const lines = diff.split("\n").filter((l) => l && !l.startsWith("---") && !l.startsWith("+++"));
  if (lines.length === 0) return <p className="muted small">No changes.</p>;
  return (
    <pre className="mono small diff" aria-label={label} data-testid="spec-diff">
      {lines.map((l, i) => (
        <span key={i} className={l.startsWith("+") ? "diff-add" : l.startsWith("-") ? "diff-del" : l.startsWith("@@") ? "diff-hunk" : undefined}>
          {l}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

function CloneForm({ project, onClose }: { project: Project; onClose: () => void }) {
  const [name, setName] = useState(`${project.name}-copy`);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function clone() {
    setBusy(true);
    setError(null);
    try {
      const made = await api.post<Project>(`/api/projects/${project.id}/clone`, { name: name.trim() });
      window.location.hash = `#/projects/${made.id}`;
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }
  return (
    <div className="clone-form" role="group" aria-label="Clone project">
      <ErrorBanner error={error} />
      <label htmlFor="clone-name">New project name</label>
      <div className="copy-row">
        <input id="clone-name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} />
        <button type="button" className="btn btn-small btn-primary" disabled={busy || !name.trim()} onClick={() => void clone()}>
          Clone and start
        </button>
        <button type="button" className="btn btn-small btn-ghost" onClick={onClose}>
          Cancel
        </button>
      </div>
      <p className="muted small">The copy is yours, with this spec; its first run starts at once with your secrets.</p>
    </div>
  );
}

export function SpecPanel({
  project,
  runId,
  runNumber,
  canEdit,
  onSaved,
  onRun,
}: {
  project: Project;
  runId: string | null;
  runNumber: number | null;
  canEdit: boolean;
  onSaved: () => Promise<void> | void;
  onRun: () => Promise<void>;
}) {
  const [runSpec, setRunSpec] = useState<Record<string, unknown> | null>(null);
  const [editing, setEditing] = useState(false);
  const [cloning, setCloning] = useState(false);
  const [text, setText] = useState("");
  const [check, setCheck] = useState<Check | null>(null);
  const [checking, setChecking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const seq = useRef(0);

  useEffect(() => {
    setRunSpec(null);
    if (!runId) return;
    api.get<{ spec: Record<string, unknown> }>(`/api/runs/${runId}/spec`).then(
      (b) => setRunSpec(b.spec),
      () => setRunSpec(null),
    );
  }, [runId]);

  // check as you type (after a pause); only the latest answer counts
  useEffect(() => {
    if (!editing) return;
    const mine = ++seq.current;
    setChecking(true);
    const t = window.setTimeout(() => {
      api.post<Check>("/api/specs/validate", { yaml: text, project_id: project.id }).then(
        (c) => mine === seq.current && (setCheck(c), setChecking(false)),
        (err) => mine === seq.current && (setError(err), setChecking(false)),
      );
    }, 400);
    return () => window.clearTimeout(t);
  }, [text, editing, project.id]);

  const shown = runSpec ?? project.spec;
  const changedSinceRun = runSpec !== null && !same(runSpec, project.spec);

  function startEdit() {
    setText(toYaml(project.spec));
    setCheck(null);
    setError(null);
    setEditing(true);
  }

  async function save(andRun: boolean) {
    setBusy(true);
    setError(null);
    try {
      const c = await api.post<Check>("/api/specs/validate", { yaml: text, project_id: project.id });
      setCheck(c);
      if (!c.valid || !c.spec) return;
      await api.patch(`/api/projects/${project.id}`, { spec: c.spec });
      setEditing(false);
      await onSaved();
      if (andRun) await onRun();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  let parsedOk = true;
  if (editing) {
    try {
      parse(text);
    } catch {
      parsedOk = false;
    }
  }

  return (
    <section className="card spec-panel" aria-labelledby="spec-title">
      <div className="card-head">
        <h2 id="spec-title">{runNumber !== null && !editing ? `Spec of run ${runNumber}` : "Spec"}</h2>
        {!editing && (
          <div className="actions">
            {canEdit && (
              <button type="button" className="btn btn-small" onClick={startEdit}>
                Edit spec
              </button>
            )}
            <button type="button" className="btn btn-small btn-ghost" onClick={() => setCloning((c) => !c)}>
              Clone…
            </button>
          </div>
        )}
      </div>
      {cloning && !editing && <CloneForm project={project} onClose={() => setCloning(false)} />}
      <ErrorBanner error={error} />
      {!editing && (
        <>
          {changedSinceRun && (
            <p className="small muted" data-testid="spec-changed-note">
              The project's spec changed since this run; the next run uses the new one.
            </p>
          )}
          <pre className="mono small spec" data-testid="spec-view">
            {toYaml(shown)}
          </pre>
        </>
      )}
      {editing && (
        <>
          <label htmlFor="spec-editor" className="small muted">
            YAML, checked by the server as you type. Saving changes the spec later runs use.
          </label>
          <textarea
            id="spec-editor"
            className="mono spec-editor"
            rows={Math.min(30, Math.max(12, text.split("\n").length + 1))}
            value={text}
            spellCheck={false}
            onChange={(e) => setText(e.target.value)}
            aria-invalid={check ? !check.valid : undefined}
            aria-describedby="spec-check"
          />
          <div id="spec-check" role="status" aria-live="polite" data-testid="spec-check">
            {checking && <span className="muted small">Checking…</span>}
            {!checking && check?.valid && <span className="ok small">✓ Valid spec</span>}
            {!checking && check && !check.valid && (
              <ul className="spec-errors" data-testid="spec-errors">
                {check.errors.map((e, i) => (
                  <li key={i}>
                    {e.path && <code>{e.path}</code>}
                    {e.line ? <span className="muted"> (line {e.line})</span> : null}
                    {e.path || e.line ? ": " : ""}
                    {e.message}
                  </li>
                ))}
              </ul>
            )}
          </div>
          {check?.diff !== undefined && check?.diff !== null && parsedOk && (
            <details open>
              <summary>Changes from the latest run's spec</summary>
              <DiffView diff={check.diff} label="Spec changes" />
            </details>
          )}
          <div className="actions">
            <button type="button" className="btn btn-primary btn-small" disabled={busy || !check?.valid} onClick={() => void save(true)}>
              Save and re-run
            </button>
            <button type="button" className="btn btn-small" disabled={busy || !check?.valid} onClick={() => void save(false)}>
              Save
            </button>
            <button type="button" className="btn btn-small btn-ghost" disabled={busy} onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </>
      )}
    </section>
  );
}
