// Account: API tokens for the CLI and CI (created with scopes, shown once, revoked) and the
// password. Tokens and passwords go to the auth service through the gateway's /api/auth/*.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, items, setTokens, type Me } from "../api";
import { ErrorBanner, Field, timeAgo } from "../components/ui";

interface ApiToken {
  id: string;
  name: string;
  hint: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  scopes: string[];
}

interface Created extends ApiToken {
  token: string;
}

const SCOPES: { value: string; label: string }[] = [
  { value: "read", label: "read — list projects, runs, logs" },
  { value: "run", label: "run — create projects, start and cancel runs" },
  { value: "deploy", label: "deploy — start and stop deployments" },
  { value: "predict", label: "predict — call inference endpoints" },
];

function TokenCreated({ created, onDone }: { created: Created; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  async function copy() {
    try {
      await navigator.clipboard.writeText(created.token);
      setCopied(true);
    } catch {
      setCopied(false); // no clipboard (insecure context): the field is selectable
    }
  }
  return (
    <div className="card token-created" role="status" aria-live="polite" data-testid="token-created">
      <h3>Token “{created.name}” created</h3>
      <p>Copy it now: it is shown only once. Use it as <code>AIDP_TOKEN</code> or with <code>aidp login --token</code>.</p>
      <div className="copy-row">
        <input
          className="mono"
          readOnly
          value={created.token}
          aria-label="New API token"
          data-testid="token-value"
          onFocus={(e) => e.currentTarget.select()}
        />
        <button type="button" className="btn btn-small" onClick={() => void copy()}>
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
      <button type="button" className="btn btn-small btn-ghost" onClick={onDone}>
        I have stored it
      </button>
    </div>
  );
}

function TokensSection({ me }: { me: Me | null }) {
  const [rows, setRows] = useState<ApiToken[] | null>(null);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["read"]);
  const [days, setDays] = useState("90");
  const [created, setCreated] = useState<Created | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(
    () => api.get("/api/auth/tokens").then((b) => (setRows(items<ApiToken>(b)), setError(null)), setError),
    [],
  );
  useEffect(() => {
    void load();
  }, [load]);

  const choices = me?.is_admin ? [...SCOPES, { value: "admin", label: "admin — platform administration" }] : SCOPES;

  function toggle(value: string, on: boolean) {
    setScopes((s) => (on ? [...new Set([...s, value])] : s.filter((x) => x !== value)));
  }

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { name: name.trim(), scopes };
      if (days) body.expires_in_days = Number(days);
      setCreated(await api.post<Created>("/api/auth/tokens", body));
      setName("");
      void load();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  async function revoke(t: ApiToken) {
    if (!window.confirm(`Revoke the token “${t.name}”? Anything using it stops working at once.`)) return;
    try {
      await api.del(`/api/auth/tokens/${encodeURIComponent(t.id)}`);
      void load();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section className="card" aria-labelledby="tokens-heading">
      <h2 id="tokens-heading">API tokens</h2>
      <p className="muted">For the CLI and CI: a token acts as you, limited to the scopes you choose. Its value is shown once.</p>
      <ErrorBanner error={error} onRetry={() => void load()} />
      {created && <TokenCreated created={created} onDone={() => setCreated(null)} />}
      <form onSubmit={create} aria-label="Create an API token">
        <Field id="token-name" label="Name" hint="What uses it, e.g. “ci-nightly”.">
          <input id="token-name" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} aria-describedby="token-name-hint" />
        </Field>
        <fieldset className="scopes">
          <legend>Scopes</legend>
          {choices.map((s) => (
            <label key={s.value} className="check">
              <input type="checkbox" checked={scopes.includes(s.value)} onChange={(e) => toggle(s.value, e.target.checked)} /> {s.label}
            </label>
          ))}
        </fieldset>
        <Field id="token-days" label="Expires">
          <select id="token-days" value={days} onChange={(e) => setDays(e.target.value)}>
            <option value="7">in 7 days</option>
            <option value="30">in 30 days</option>
            <option value="90">in 90 days</option>
            <option value="365">in a year</option>
            <option value="">never</option>
          </select>
        </Field>
        <button type="submit" className="btn btn-primary" disabled={busy || !name.trim() || scopes.length === 0}>
          Create token
        </button>
      </form>
      <h3>Your tokens</h3>
      {rows?.length === 0 && <p className="muted">None yet.</p>}
      {rows && rows.length > 0 && (
        <table className="table" data-testid="token-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Token</th>
              <th scope="col">Scopes</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>
                  <code>{t.hint}…</code>
                </td>
                <td>{t.scopes.join(", ")}</td>
                <td>{timeAgo(t.created_at)}</td>
                <td>{t.last_used_at ? timeAgo(t.last_used_at) : "never"}</td>
                <td>{t.expires_at ? new Date(t.expires_at).toLocaleDateString() : "never"}</td>
                <td>
                  <button type="button" className="btn btn-small btn-danger" onClick={() => void revoke(t)} aria-label={`Revoke ${t.name}`}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function PasswordSection() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const mismatch = again && next !== again ? "The two new passwords differ." : undefined;

  async function change(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/auth/password", { current_password: current, new_password: next });
      // every session and API token was revoked with the old password: log in again
      setTokens(null, "Password changed. Log in with your new password.");
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <form className="card" onSubmit={change} aria-labelledby="password-heading">
      <h2 id="password-heading">Change password</h2>
      <p className="muted">Changing it signs you out everywhere and revokes your API tokens.</p>
      <ErrorBanner error={error} />
      <Field id="pw-current" label="Current password">
        <input id="pw-current" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
      </Field>
      <Field id="pw-new" label="New password" hint="At least 10 characters, mixing kinds of characters; not a common password.">
        <input id="pw-new" type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} aria-describedby="pw-new-hint" />
      </Field>
      <Field id="pw-again" label="New password again" error={mismatch}>
        <input id="pw-again" type="password" autoComplete="new-password" value={again} onChange={(e) => setAgain(e.target.value)} />
      </Field>
      <button type="submit" className="btn btn-primary" disabled={busy || !current || !next || next !== again}>
        Change password
      </button>
    </form>
  );
}

export function AccountPage() {
  const [me, setMe] = useState<Me | null>(null);
  useEffect(() => {
    api.get<Me>("/api/auth/me").then(setMe, () => setMe(null));
  }, []);
  return (
    <main className="page">
      <h1>Account</h1>
      {me && (
        <p className="muted">
          Signed in as <strong>{me.email}</strong>
          {me.is_admin ? " (platform admin)" : ""}.
        </p>
      )}
      <TokensSection me={me} />
      <PasswordSection />
    </main>
  );
}
