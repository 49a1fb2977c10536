// The shell: who is logged in, the header, and a tiny hash router (works behind any static host).
import { useEffect, useState } from "react";
import { api, getTokens, hasSession, logout, onTokens, type Me } from "./api";
import { ErrorBoundary } from "./components/ui";
import { AccountPage } from "./pages/AccountPage";
import { AuthPage } from "./pages/AuthPage";
import { DeploymentsPage } from "./pages/DeploymentsPage";
import { NewProjectPage } from "./pages/NewProjectPage";
import { ProjectPage } from "./pages/ProjectPage";
import { ProjectsPage } from "./pages/ProjectsPage";
import { SecretsPage } from "./pages/SecretsPage";

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(window.location.hash || "#/");
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function Route({ hash }: { hash: string }) {
  const path = hash.replace(/^#/, "") || "/";
  const project = /^\/projects\/([\w-]+)$/.exec(path);
  if (project) return <ProjectPage key={project[1]} projectId={project[1]} />;
  if (path === "/new") return <NewProjectPage />;
  if (path === "/secrets") return <SecretsPage />;
  if (path === "/deployments") return <DeploymentsPage />;
  if (path === "/account") return <AccountPage />;
  if (path === "/" || path === "/projects") return <ProjectsPage />;
  return (
    <main className="page">
      <h1>Page not found</h1>
      <a href="#/">Back to projects</a>
    </main>
  );
}

export function App() {
  const [loggedIn, setLoggedIn] = useState(!!getTokens() || hasSession());
  const [reason, setReason] = useState<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const hash = useHash();

  useEffect(
    () =>
      onTokens((tokens, why) => {
        setLoggedIn(!!tokens);
        if (!tokens) {
          setReason(why ?? null);
          setMe(null);
        }
      }),
    [],
  );
  useEffect(() => {
    if (loggedIn) api.get<Me>("/api/auth/me").then(setMe, () => setMe(null));
  }, [loggedIn]);

  if (!loggedIn) return <AuthPage reason={reason} />;
  const nav = (href: string, label: string, active: boolean) => (
    <a href={href} className={active ? "nav-link active" : "nav-link"} aria-current={active ? "page" : undefined}>
      {label}
    </a>
  );
  return (
    <>
      <a href="#main" className="skip">
        Skip to content
      </a>
      <header className="topbar">
        <a href="#/" className="brand">
          <span className="logo" aria-hidden="true">a</span> aidp
        </a>
        <nav aria-label="Main">
          {nav("#/", "Projects", hash === "#/" || hash.startsWith("#/projects"))}
          {nav("#/new", "New project", hash === "#/new")}
          {nav("#/deployments", "Deployments", hash === "#/deployments")}
          {nav("#/secrets", "Secrets", hash === "#/secrets")}
          {nav("#/account", "Account", hash === "#/account")}
        </nav>
        <div className="user">
          {me && <span className="muted small" data-testid="me">{me.email}</span>}
          <button type="button" className="btn btn-small btn-ghost" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      </header>
      <div id="main">
        <ErrorBoundary key={hash}>
          <Route hash={hash} />
        </ErrorBoundary>
      </div>
    </>
  );
}
