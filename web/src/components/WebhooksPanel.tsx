// A project's webhooks (editors): add a receiver (its signing secret shown once), remove
// it, and read its delivery log (status, tries, last answer).
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, items } from "../api";
import { ErrorBanner, timeAgo } from "./ui";

interface Webhook {
  id: string;
  url: string;
  format: "json" | "slack";
  events: string[];
  created_at: string;
}

interface Delivery {
  id: string;
  kind: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  next_attempt_at: string | null;
}

const KINDS: { value: string; label: string }[] = [
  { value: "run.succeeded", label: "run succeeded" },
  { value: "run.failed", label: "run failed" },
  { value: "run.cancelled", label: "run cancelled" },
  { value: "model.deployed", label: "model deployed" },
];

function Deliveries({ projectId, hookId }: { projectId: string; hookId: string }) {
  const [rows, setRows] = useState<Delivery[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api.get(`/api/projects/${projectId}/webhooks/${hookId}/deliveries?limit=20`).then((b) => setRows(items<Delivery>(b)), setError);
  }, [projectId, hookId]);
  if (error) return <ErrorBanner error={error} />;
  if (!rows) return <p className="muted small">Loading…</p>;
  if (rows.length === 0) return <p className="muted small">No deliveries yet: they are sent when a run ends or a model is deployed.</p>;
  return (
    <table className="table small" data-testid="webhook-deliveries">
      <thead>
        <tr>
          <th scope="col">Event</th>
          <th scope="col">Status</th>
          <th scope="col">Tries</th>
          <th scope="col">Last answer</th>
          <th scope="col">When</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((d) => (
          <tr key={d.id}>
            <td>{d.kind}</td>
            <td>{d.status}</td>
            <td>{d.attempts}</td>
            <td>{d.last_error ?? (d.last_status_code ? `HTTP ${d.last_status_code}` : "–")}</td>
            <td>{timeAgo(d.created_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function WebhooksPanel({ projectId }: { projectId: string }) {
  const [hooks, setHooks] = useState<Webhook[] | null>(null);
  const [url, setUrl] = useState("");
  const [format, setFormat] = useState<"json" | "slack">("json");
  const [events, setEvents] = useState<string[]>(["run.succeeded", "run.failed", "model.deployed"]);
  const [secret, setSecret] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  const load = useCallback(
    () => api.get(`/api/projects/${projectId}/webhooks`).then((b) => (setHooks(items<Webhook>(b)), setError(null)), setError),
    [projectId],
  );
  useEffect(() => {
    void load();
  }, [load]);

  async function add(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const made = await api.post<Webhook & { secret: string }>(`/api/projects/${projectId}/webhooks`, { url: url.trim(), format, events });
      setSecret(made.secret);
      setUrl("");
      void load();
    } catch (err) {
      setError(err);
    }
  }

  async function remove(h: Webhook) {
    if (!window.confirm(`Remove the webhook to ${h.url}? Its delivery log goes with it.`)) return;
    try {
      await api.del(`/api/projects/${projectId}/webhooks/${h.id}`);
      void load();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section className="card" aria-labelledby="webhooks-title">
      <h2 id="webhooks-title">Webhooks</h2>
      <p className="muted small">
        Signed POSTs (<code>X-Aidp-Signature: sha256=…</code>, HMAC of timestamp and body) when a run ends or a model is deployed; retried with
        backoff until the receiver answers 2xx.
      </p>
      <ErrorBanner error={error} />
      {secret && (
        <div className="card token-created" role="status" data-testid="webhook-secret">
          <p>Signing secret, shown once: store it where the receiver verifies signatures.</p>
          <div className="copy-row">
            <input className="mono" readOnly value={secret} aria-label="Webhook signing secret" onFocus={(e) => e.currentTarget.select()} />
            <button type="button" className="btn btn-small btn-ghost" onClick={() => setSecret(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      <form onSubmit={add} aria-label="Add a webhook">
        <div className="copy-row">
          <input type="url" placeholder="https://…" aria-label="Webhook URL" value={url} onChange={(e) => setUrl(e.target.value)} />
          <select aria-label="Payload format" value={format} onChange={(e) => setFormat(e.target.value as "json" | "slack")}>
            <option value="json">JSON</option>
            <option value="slack">Slack</option>
          </select>
          <button type="submit" className="btn btn-small btn-primary" disabled={!url.trim() || events.length === 0}>
            Add
          </button>
        </div>
        <fieldset className="scopes">
          <legend className="small muted">Notify on</legend>
          {KINDS.map((k) => (
            <label key={k.value} className="check small">
              <input
                type="checkbox"
                checked={events.includes(k.value)}
                onChange={(e) => setEvents((ev) => (e.target.checked ? [...ev, k.value] : ev.filter((x) => x !== k.value)))}
              />{" "}
              {k.label}
            </label>
          ))}
        </fieldset>
      </form>
      {hooks?.length === 0 && <p className="muted small">No webhooks.</p>}
      <ul className="secret-list">
        {hooks?.map((h) => (
          <li key={h.id}>
            <div>
              <code className="break">{h.url}</code> <span className="muted small">({h.format}; {h.events.join(", ")})</span>
              {open === h.id && <Deliveries projectId={projectId} hookId={h.id} />}
            </div>
            <div className="actions">
              <button type="button" className="btn btn-small btn-ghost" onClick={() => setOpen(open === h.id ? null : h.id)}>
                {open === h.id ? "Hide deliveries" : "Deliveries"}
              </button>
              <button type="button" className="btn btn-small btn-danger" onClick={() => void remove(h)}>
                Remove
              </button>
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}
