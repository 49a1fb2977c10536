// Sections of the project page: run history, models, deployment "try it", members, delete.
import { useEffect, useState, type FormEvent } from "react";
import { api, freshAccessToken, errorFrom, items, type Deployment, type Invitation, type Me, type Member, type ModelVersion, type Project, type Run } from "../api";
import { ErrorBanner, Field, StatusBadge, errorText, timeAgo } from "../components/ui";
import { formatDuration, isFinal } from "../runState";

function runDuration(r: Run): string {
  const start = Date.parse(r.created_at);
  const end = r.finished_at ? Date.parse(r.finished_at) : Date.now();
  return Number.isFinite(start) && Number.isFinite(end) ? formatDuration((end - start) / 1000) : "";
}

export function RunHistory({
  runs,
  selected,
  onSelect,
  canEdit,
  onRerun,
  onCancel,
}: {
  runs: Run[];
  selected: string | null;
  onSelect: (id: string) => void;
  canEdit: boolean;
  onRerun: () => void;
  onCancel: (id: string) => void;
}) {
  return (
    <section className="card" aria-labelledby="runs-title">
      <div className="page-head">
        <h2 id="runs-title">Runs</h2>
        {canEdit && (
          <button type="button" className="btn btn-small" onClick={onRerun}>
            ↻ Re-run
          </button>
        )}
      </div>
      {runs.length === 0 ? (
        <p className="muted">No runs yet.</p>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Status</th>
              <th scope="col">Started</th>
              <th scope="col">Took</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {runs.map((r) => (
              <tr key={r.id} className={r.id === selected ? "selected" : undefined}>
                <td>
                  <button type="button" className="link" onClick={() => onSelect(r.id)} aria-pressed={r.id === selected} aria-label={`Show run ${r.number}`}>
                    {r.number}
                  </button>
                </td>
                <td>
                  <StatusBadge status={r.status} />
                  {r.error && <div className="small field-error">{r.error}</div>}
                </td>
                <td className="small">{timeAgo(r.created_at)}</td>
                <td className="small">{runDuration(r)}</td>
                <td>
                  {canEdit && !isFinal(r.status) && (
                    <button type="button" className="btn btn-small btn-danger" onClick={() => onCancel(r.id)}>
                      Cancel
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

async function downloadModel(m: ModelVersion): Promise<void> {
  const token = await freshAccessToken();
  const res = await fetch(`/api/models/${m.id}/download`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    throw errorFrom(res.status, body, res.statusText);
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = `model-${m.version ?? m.id}.tar`;
  a.click();
  URL.revokeObjectURL(url);
}

export function Models({ models, canEdit, onDeployed }: { models: ModelVersion[]; canEdit: boolean; onDeployed: () => void }) {
  const [error, setError] = useState<unknown>(null);
  return (
    <section className="card" aria-labelledby="models-title">
      <h2 id="models-title">Model versions</h2>
      <ErrorBanner error={error} />
      {models.length === 0 ? (
        <p className="muted">A version appears here when a run finishes training.</p>
      ) : (
        <ul className="models">
          {models.map((m) => (
            <li key={m.id} className="model">
              <div className="stage-row">
                <strong>version {String(m.version ?? "?")}</strong>
                <span className="small muted">{timeAgo(m.created_at)}</span>
              </div>
              {Object.keys(m.metrics ?? {}).length > 0 && (
                <p className="small">
                  {Object.entries(m.metrics)
                    .map(([k, v]) => `${k}: ${typeof v === "number" ? v.toPrecision(3) : String(v)}`)
                    .join(" · ")}
                </p>
              )}
              <details>
                <summary className="small">Lineage</summary>
                <dl className="lineage small">
                  {Object.entries(m.lineage ?? {}).map(([k, v]) => (
                    <div key={k}>
                      <dt>{k}</dt>
                      <dd className="mono">{typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>
                    </div>
                  ))}
                  {m.digest && (
                    <div>
                      <dt>digest</dt>
                      <dd className="mono">{m.digest}</dd>
                    </div>
                  )}
                </dl>
              </details>
              <div className="actions">
                <button type="button" className="btn btn-small" onClick={() => downloadModel(m).catch(setError)}>
                  Download
                </button>
                {canEdit && (
                  <button
                    type="button"
                    className="btn btn-small"
                    onClick={() =>
                      api.post(`/api/models/${m.id}/deploy`).then(() => {
                        setError(null);
                        onDeployed();
                      }, setError)
                    }
                  >
                    Deploy this version
                  </button>
                )}
              </div>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function DeploymentPanel({ deploymentId, canEdit }: { deploymentId: string; canEdit: boolean }) {
  const [dep, setDep] = useState<Deployment | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [input, setInput] = useState("I loved this film, the actors were wonderful.\nA dull, predictable waste of two hours.");
  const [outputs, setOutputs] = useState<{ input: string; output: unknown }[] | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let stop = false;
    const load = () =>
      api.get<Deployment>(`/api/deployments/${deploymentId}`).then(
        (d) => !stop && (setDep(d), setError(null)),
        (e) => !stop && setError(e),
      );
    void load();
    const t = window.setInterval(load, 5000);
    return () => {
      stop = true;
      window.clearInterval(t);
    };
  }, [deploymentId]);

  async function predict(e: FormEvent) {
    e.preventDefault();
    const inputs = input.split("\n").map((s) => s.trim()).filter(Boolean);
    if (!inputs.length) return;
    setBusy(true);
    setError(null);
    try {
      const res = await api.post<{ outputs: unknown[] }>(`/api/deployments/${deploymentId}/predict`, { inputs });
      setOutputs(inputs.map((inp, i) => ({ input: inp, output: res.outputs[i] })));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const endpoint = `${window.location.origin}${dep?.endpoint ?? `/api/deployments/${deploymentId}/predict`}`;
  return (
    <section className="card" aria-labelledby="deploy-title" data-testid="deployment">
      <div className="page-head">
        <h2 id="deploy-title">Deployment</h2>
        {dep && (
          <span className={`badge badge-${dep.status}`} data-status={dep.status}>
            {dep.status}
          </span>
        )}
      </div>
      <p className="small">
        Endpoint: <code className="break">{endpoint}</code>
      </p>
      <ErrorBanner error={error} />
      <form onSubmit={predict} className="tryit">
        <Field id="tryit-input" label="Try it: one input per line" hint="Sent as {&quot;inputs&quot;: [...]} to the endpoint">
          <textarea id="tryit-input" rows={3} value={input} onChange={(e) => setInput(e.target.value)} aria-describedby="tryit-input-hint" />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Predicting…" : "Predict"}
        </button>
      </form>
      {outputs && (
        <table className="table" data-testid="predictions">
          <thead>
            <tr>
              <th scope="col">Input</th>
              <th scope="col">Prediction</th>
            </tr>
          </thead>
          <tbody>
            {outputs.map((o, i) => (
              <tr key={i}>
                <td>{o.input}</td>
                <td className="mono">{formatOutput(o.output)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <details>
        <summary className="small">Call it from code</summary>
        <pre className="mono small">{`curl -X POST ${endpoint} \\
  -H "Authorization: Bearer $AIDP_TOKEN" -H "Content-Type: application/json" \\
  -d '{"inputs": ["some text"]}'

aidp predict ${deploymentId} --input "some text"`}</pre>
      </details>
      <p className="small">
        <a href="#/deployments">All deployments</a> — start, stop, make another version live, roll back.
      </p>
      {canEdit && dep?.status !== "stopped" && (
        <StopDeployment
          onStop={() =>
            api.post<Deployment>(`/api/deployments/${deploymentId}/stop`).then((d) => setDep(d), setError)
          }
        />
      )}
    </section>
  );
}

/** "Stop deployment" asks first (a stop drops the endpoint until it is started again). */
function StopDeployment({ onStop }: { onStop: () => Promise<unknown> }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className="btn btn-small btn-danger" onClick={() => setAsking(true)}>
        Stop deployment…
      </button>
    );
  return (
    <span className="actions confirm" role="group" aria-label="Confirm stopping the deployment">
      <span className="small">Stop this deployment? Requests fail until it is started again.</span>
      <button type="button" className="btn btn-small btn-danger" onClick={() => void onStop().finally(() => setAsking(false))}>
        Stop
      </button>
      <button type="button" className="btn btn-small btn-ghost" onClick={() => setAsking(false)}>
        Keep running
      </button>
    </span>
  );
}

function formatOutput(out: unknown): string {
  if (out && typeof out === "object" && "label" in out) {
    const o = out as { label: unknown; score?: unknown };
    return typeof o.score === "number" ? `${String(o.label)} (${o.score.toFixed(3)})` : String(o.label);
  }
  return typeof out === "string" ? out : JSON.stringify(out);
}

/**
 * Who may see the project. Owners invite (the invitee accepts on their projects page, so
 * the answer is "invitation sent", never "added"), see pending invitations and withdraw
 * them, and remove members after a confirmation; anyone but the last owner may leave.
 */
export function Members({ project }: { project: Project }) {
  const [members, setMembers] = useState<Member[] | null>(null);
  const [pending, setPending] = useState<Invitation[]>([]);
  const [meId, setMeId] = useState<string | null>(null);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Member["role"]>("viewer");
  const [confirming, setConfirming] = useState<string | null>(null); // user_id to remove
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const owner = project.role === "owner";

  const load = async () => {
    try {
      setMembers(items<Member>(await api.get(`/api/projects/${project.id}/members`)));
      if (owner) setPending(items<Invitation>(await api.get(`/api/projects/${project.id}/invitations`)));
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    void load();
    api.get<Me>("/api/auth/me").then((me) => setMeId(me.id), () => setMeId(null));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [project.id]);

  async function run(fn: () => Promise<unknown>, done: string) {
    setError(null);
    setNotice(null);
    try {
      await fn();
      setNotice(done);
      await load();
    } catch (err) {
      setError(err);
    }
  }

  async function add(e: FormEvent) {
    e.preventDefault();
    setError(null);
    setNotice(null);
    const invited = email;
    try {
      const answer = await api.post<Invitation | Member>(`/api/projects/${project.id}/members`, { email: invited, role });
      // 202: an invitation the invitee accepts; 200: an existing member's role changed
      setNotice(
        "status" in answer && answer.status === "invited"
          ? `Invitation sent to ${invited} as ${role}. They join when they accept it.`
          : `${invited} is now ${role}.`,
      );
      setEmail("");
      await load();
    } catch (err) {
      setError(err);
    }
  }

  async function remove(m: Member) {
    setConfirming(null);
    const leaving = m.user_id === meId;
    await run(() => api.del(`/api/projects/${project.id}/members/${m.user_id}`), leaving ? "You left the project." : `${m.email} was removed.`);
    if (leaving) window.location.hash = "#/";
  }

  return (
    <section className="card" aria-labelledby="members-title" data-testid="members">
      <h2 id="members-title">Members</h2>
      <p className="small muted">
        You are <strong data-testid="my-role">{project.role}</strong>. Viewers watch, editors run and deploy, owners also manage members and delete.
      </p>
      {members && (
        <ul className="members">
          {members.map((m) => (
            <li key={m.user_id} data-member={m.email}>
              <span>
                {m.email} <span className="badge">{m.role}</span>
              </span>
              {(owner || m.user_id === meId) &&
                (confirming === m.user_id ? (
                  <span className="actions confirm" role="group" aria-label={`Confirm removing ${m.email}`}>
                    <span className="small">{m.user_id === meId ? "Leave this project?" : `Remove ${m.email}?`}</span>
                    <button type="button" className="btn btn-small btn-danger" onClick={() => void remove(m)}>
                      {m.user_id === meId ? "Leave" : "Remove"}
                    </button>
                    <button type="button" className="btn btn-small btn-ghost" onClick={() => setConfirming(null)}>
                      Keep
                    </button>
                  </span>
                ) : (
                  <button
                    type="button"
                    className="btn btn-small btn-ghost"
                    onClick={() => setConfirming(m.user_id)}
                    aria-label={m.user_id === meId ? "Leave this project" : `Remove ${m.email}`}
                  >
                    {m.user_id === meId ? "Leave…" : "Remove…"}
                  </button>
                ))}
            </li>
          ))}
        </ul>
      )}
      {owner && pending.length > 0 && (
        <>
          <h3 className="small">Pending invitations</h3>
          <ul className="members" aria-label="Pending invitations">
            {pending.map((i) => (
              <li key={i.id} data-invitation={i.email}>
                <span>
                  {i.email} <span className="badge">{i.role}</span> <span className="small muted">invited {timeAgo(i.created_at)}</span>
                </span>
                <button
                  type="button"
                  className="btn btn-small btn-ghost"
                  aria-label={`Withdraw the invitation of ${i.email}`}
                  onClick={() => void run(() => api.del(`/api/projects/${project.id}/invitations/${i.id}`), `Invitation of ${i.email} withdrawn.`)}
                >
                  Withdraw
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
      {owner && (
        <form onSubmit={add} className="row members-form">
          <Field id="member-email" label="Email">
            <input id="member-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
          </Field>
          <Field id="member-role" label="Role">
            <select id="member-role" value={role} onChange={(e) => setRole(e.target.value as Member["role"])}>
              <option value="viewer">viewer</option>
              <option value="editor">editor</option>
              <option value="owner">owner</option>
            </select>
          </Field>
          <button type="submit" className="btn" disabled={!email}>
            Invite
          </button>
        </form>
      )}
      <ErrorBanner error={error} />
      {notice && <p className="ok small" role="status">{notice}</p>}
    </section>
  );
}

export function DeleteProject({ project }: { project: Project }) {
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState("");
  const [error, setError] = useState<unknown>(null);
  if (project.role !== "owner") return null;
  async function remove(e: FormEvent) {
    e.preventDefault();
    try {
      await api.del(`/api/projects/${project.id}`);
      window.location.hash = "#/";
    } catch (err) {
      setError(err);
    }
  }
  return (
    <section className="card danger" aria-labelledby="delete-title">
      <h2 id="delete-title">Delete project</h2>
      {!open ? (
        <button type="button" className="btn btn-danger" onClick={() => setOpen(true)}>
          Delete this project…
        </button>
      ) : (
        <form onSubmit={remove}>
          <p>This stops running work, releases its nodes, removes deployments and model versions. It cannot be undone.</p>
          <Field id="confirm-name" label={`Type ${project.name} to confirm`}>
            <input id="confirm-name" value={typed} onChange={(e) => setTyped(e.target.value)} autoFocus />
          </Field>
          <div className="actions">
            <button type="submit" className="btn btn-danger" disabled={typed !== project.name}>
              Delete for good
            </button>
            <button type="button" className="btn btn-ghost" onClick={() => setOpen(false)}>
              Keep it
            </button>
          </div>
          {error ? <p className="field-error" role="alert">{errorText(error)}</p> : null}
        </form>
      )}
    </section>
  );
}
