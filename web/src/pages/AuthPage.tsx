// Sign up or log in. A newcomer lands here first.
import { useState, type FormEvent } from "react";
import { login, register } from "../api";
import { ErrorBanner, Field, Notice, describedBy } from "../components/ui";
import { SsoButton } from "../components/SsoButton";

export function AuthPage({ reason }: { reason?: string | null }) {
  const [mode, setMode] = useState<"login" | "signup">("signup");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const pwError = mode === "signup" && password && password.length < 8 ? "At least 8 characters." : undefined;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "signup") await register(email, password);
      else await login(email, password);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="auth">
      <section className="auth-intro">
        <h1>
          <span className="logo" aria-hidden="true">a</span> aidp
        </h1>
        <p className="lead">Pick a HuggingFace model and a dataset. aidp fetches them, sets up the compute, trains, and gives you a live endpoint.</p>
        <ol className="steps">
          <li>Describe your project in a short form — sensible defaults are filled in.</li>
          <li>Watch it download, provision, train and deploy, live.</li>
          <li>Try your model right in the browser, or call its endpoint.</li>
        </ol>
      </section>
      <section className="card auth-card" aria-labelledby="auth-title">
        <div className="tabs" role="tablist" aria-label="Account">
          <button type="button" role="tab" aria-selected={mode === "signup"} className={mode === "signup" ? "tab active" : "tab"} onClick={() => setMode("signup")}>
            Create account
          </button>
          <button type="button" role="tab" aria-selected={mode === "login"} className={mode === "login" ? "tab active" : "tab"} onClick={() => setMode("login")}>
            Log in
          </button>
        </div>
        <h2 id="auth-title" className="sr-only">{mode === "signup" ? "Create an account" : "Log in"}</h2>
        {reason && <Notice>{reason}</Notice>}
        <ErrorBanner error={error} />
        <SsoButton />
        <form onSubmit={submit} noValidate>
          <Field id="email" label="Email">
            <input id="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          </Field>
          <Field id="password" label="Password" error={pwError} hint={mode === "signup" ? "At least 8 characters." : undefined}>
            <input
              id="password"
              type="password"
              autoComplete={mode === "signup" ? "new-password" : "current-password"}
              required
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              {...describedBy("password", pwError)}
            />
          </Field>
          <button type="submit" className="btn btn-primary btn-block" disabled={busy || !email || !password || !!pwError}>
            {busy ? "Please wait…" : mode === "signup" ? "Create account" : "Log in"}
          </button>
        </form>
      </section>
    </main>
  );
}
