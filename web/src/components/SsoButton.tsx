// "Sign in with <provider>" on the login page when the platform has single sign-on (OIDC).
// The button is a plain link: the browser goes to /api/auth/oidc/login, on to the identity
// provider, and back to /api/auth/oidc/callback, which sets the session cookie and returns
// to #/sso-complete (api.ts restores the session from it) or to #/sso-error?code=…
import { useEffect, useState } from "react";
import { request } from "../api";
import { ErrorBanner } from "./ui";

interface SsoConfig {
  enabled: boolean;
  label: string | null;
  login_url: string | null;
}

/** What each refusal code of the callback means (the URL carries a code, never text). */
const MESSAGES: Record<string, string> = {
  sso_state_invalid: "That sign-in link expired or was opened in another browser. Please start again.",
  sso_denied: "The sign-in was cancelled or refused at your identity provider.",
  sso_email_missing: "Your identity provider did not share your email address.",
  sso_email_invalid: "Your identity provider's email address cannot be used here.",
  sso_email_unverified: "Your identity provider has not verified your email address. Verify it there, then sign in again.",
  sso_registration_closed: "There is no account for your email and registration is closed. Ask an administrator.",
  sso_invitation_required: "This platform is invite-only. Ask an administrator for an invitation.",
  sso_invitation_invalid: "The invitation is invalid, expired, already used or for another email.",
  sso_account_disabled: "This account is disabled. Ask an administrator.",
  sso_identity_conflict: "This account is already linked to another identity at your provider. Ask an administrator.",
  sso_token_invalid: "Your identity provider's answer failed verification. Please try again.",
  sso_unavailable: "Your identity provider is not reachable right now. Try again later.",
  sso_misconfigured: "Single sign-on is misconfigured on this platform. Tell an administrator.",
  sso_not_configured: "Single sign-on is not set up on this platform.",
  sso_retry: "Signing in raced with another sign-in. Please try again.",
};

/** The refusal the callback sent us back with (#/sso-error?code=…), if any. */
function ssoErrorFromHash(): string | null {
  const hash = window.location.hash;
  if (!hash.startsWith("#/sso-error")) return null;
  const code = new URLSearchParams(hash.split("?")[1] ?? "").get("code") ?? "";
  return MESSAGES[code] ?? "Single sign-on failed. Please try again.";
}

export function SsoButton() {
  const [config, setConfig] = useState<SsoConfig | null>(null);
  const [error] = useState<string | null>(ssoErrorFromHash);

  useEffect(() => {
    if (error) window.history.replaceState(null, "", window.location.pathname + window.location.search + "#/");
    let live = true;
    request<SsoConfig>("GET", "/api/auth/oidc/config", { auth: false })
      .then((c) => live && setConfig(c))
      .catch(() => live && setConfig(null)); // no SSO button when the config cannot be read
    return () => {
      live = false;
    };
  }, [error]);

  return (
    <>
      {error && <ErrorBanner error={new Error(error)} />}
      {config?.enabled && (
        <>
          <a className="btn btn-block" href="/api/auth/oidc/login" data-testid="sso-login">
            Sign in with {config.label || "single sign-on"}
          </a>
          <p className="muted hint" aria-hidden="true">
            or with your email and password
          </p>
        </>
      )}
    </>
  );
}
