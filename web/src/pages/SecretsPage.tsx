// Secrets: values go in (to Vault), only names come back.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, items } from "../api";
import { ErrorBanner, Field, describedBy } from "../components/ui";

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

export function SecretsPage() {
  const [names, setNames] = useState<string[] | null>(null);
  const [name, setName] = useState("HF_TOKEN");
  const [value, setValue] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const nameError = name && !NAME.test(name) ? "Letters, digits, _ . - (start with a letter or _)." : undefined;

  const load = useCallback(
    () =>
      api.get("/api/secrets").then(
        (b) => (setNames(items<string>(b)), setError(null)),
        setError,
      ),
    [],
  );
  useEffect(() => {
    void load();
  }, [load]);

  async function save(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await api.put(`/api/secrets/${encodeURIComponent(name)}`, { value });
      setValue("");
      setNotice(`${name} saved. Its value is stored encrypted and never shown again.`);
      void load();
    } catch (err) {
      setError(err);
    }
  }

  async function remove(n: string) {
    if (!window.confirm(`Delete the secret ${n}?`)) return;
    try {
      await api.del(`/api/secrets/${encodeURIComponent(n)}`);
      setNotice(`${n} deleted.`);
      void load();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <main className="page">
      <h1>Secrets</h1>
      <p className="muted">
        Tokens and keys your projects need: <code>HF_TOKEN</code> for private or gated HuggingFace models,{" "}
        <code>KAGGLE_API_TOKEN</code> for Kaggle data, SSH private keys for your own hosts. Values are kept in the vault; the platform only
        ever shows their names.
      </p>
      <ErrorBanner error={error} onRetry={() => void load()} />
      {notice && (
        <p className="ok" role="status">
          {notice}
        </p>
      )}
      <div className="grid-2">
        <form className="card" onSubmit={save} aria-labelledby="add-secret">
          <h2 id="add-secret">Add or replace a secret</h2>
          <Field id="secret-name" label="Name" error={nameError}>
            <input id="secret-name" value={name} onChange={(e) => setName(e.target.value)} list="secret-suggestions" {...describedBy("secret-name", nameError)} />
          </Field>
          <datalist id="secret-suggestions">
            <option value="HF_TOKEN" />
            <option value="KAGGLE_API_TOKEN" />
            <option value="SSH_KEY" />
          </datalist>
          <Field id="secret-value" label="Value" hint="Paste the token or key. It is sent once and never displayed.">
            <textarea id="secret-value" rows={3} value={value} onChange={(e) => setValue(e.target.value)} autoComplete="off" spellCheck={false} className="mono" aria-describedby="secret-value-hint" />
          </Field>
          <button type="submit" className="btn btn-primary" disabled={!value || !name || !!nameError}>
            Save secret
          </button>
        </form>
        <section className="card" aria-labelledby="your-secrets">
          <h2 id="your-secrets">Your secrets</h2>
          {names?.length === 0 && <p className="muted">None yet.</p>}
          <ul className="secret-list">
            {names?.map((n) => (
              <li key={n}>
                <code>{n}</code>
                <button type="button" className="btn btn-small btn-danger" onClick={() => void remove(n)} aria-label={`Delete ${n}`}>
                  Delete
                </button>
              </li>
            ))}
          </ul>
        </section>
      </div>
    </main>
  );
}
