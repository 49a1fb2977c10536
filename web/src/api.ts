// The one way the UI talks to the gateway (docs/design.md §5): JSON over fetch, bearer tokens,
// silent refresh (before expiry and on a 401), and errors as ApiError with a readable message.

import type { components } from "./api-types";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    /** The whole `error` object of the answer (e.g. `spec_hash` and `diff` of `spec_changed`). */
    public details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/**
 * The access token lives in memory only. The refresh token never reaches page scripts: the
 * auth service keeps it in an HttpOnly, SameSite=Strict cookie scoped to /api/auth, sent
 * by the browser on /api/auth/refresh and /api/auth/logout. localStorage holds only a
 * non-secret marker saying a session cookie should exist, so a reload restores the
 * session with one refresh.
 */
export interface Tokens {
  access_token: string;
}

const SESSION_KEY = "aidp.session";
const LEGACY_KEY = "aidp.tokens"; // older builds kept the refresh token here: drop it
type Listener = (tokens: Tokens | null, reason?: string) => void;
const listeners = new Set<Listener>();
let tokens: Tokens | null = null;
let refreshing: Promise<Tokens> | null = null;
let refreshTimer: number | undefined;

function storage(): Storage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}
storage()?.removeItem(LEGACY_KEY);

/** True while a session cookie should exist (logged in, maybe before the first refresh). */
export function hasSession(): boolean {
  return storage()?.getItem(SESSION_KEY) === "1";
}

export function getTokens(): Tokens | null {
  return tokens;
}

export function onTokens(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function setTokens(next: Tokens | null, reason?: string): void {
  tokens = next ? { access_token: next.access_token } : null;
  if (next) storage()?.setItem(SESSION_KEY, "1");
  else storage()?.removeItem(SESSION_KEY);
  scheduleRefresh();
  listeners.forEach((l) => l(next, reason));
}

/** Seconds until the access token expires (JWT `exp`), or null when unknown. */
export function accessTokenTtl(token: string | undefined = tokens?.access_token): number | null {
  if (!token) return null;
  try {
    const body = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof body.exp === "number" ? body.exp - Date.now() / 1000 : null;
  } catch {
    return null;
  }
}

function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  const ttl = accessTokenTtl();
  if (tokens && ttl !== null) {
    const wait = Math.max(5, ttl - 60) * 1000; // a minute before expiry
    refreshTimer = window.setTimeout(() => void refresh().catch(() => undefined), wait);
  }
}
scheduleRefresh();
// Back from single sign-on (/api/auth/oidc/callback set the session cookie): restore it.
if (typeof window !== "undefined" && window.location?.hash === "#/sso-complete") {
  storage()?.setItem(SESSION_KEY, "1");
  window.history?.replaceState(null, "", window.location.pathname + window.location.search + "#/");
}
// After a reload only the cookie is left: trade it for an access token right away.
if (hasSession()) void refresh().catch(() => undefined);

/** Rotate the refresh cookie for a new access token; concurrent callers share one request. */
export function refresh(): Promise<Tokens> {
  if (refreshing) return refreshing;
  if (!tokens && !hasSession()) return Promise.reject(new ApiError(401, "unauthenticated", "Please log in."));
  refreshing = (async () => {
    try {
      const pair = await request<Tokens>("POST", "/api/auth/refresh", { auth: false });
      setTokens(pair);
      return pair;
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) {
        setTokens(null, "Your session expired. Please log in again.");
      }
      throw err;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A valid access token, refreshed first if it is about to expire. */
export async function freshAccessToken(): Promise<string> {
  const ttl = accessTokenTtl();
  if (tokens && ttl !== null && ttl < 30) return (await refresh()).access_token;
  if (!tokens && hasSession()) return (await refresh()).access_token;
  if (!tokens) throw new ApiError(401, "unauthenticated", "Please log in.");
  return tokens.access_token;
}

interface RequestOptions {
  body?: unknown;
  auth?: boolean;
  signal?: AbortSignal;
}

async function send(method: string, path: string, opts: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.auth !== false && tokens) headers.Authorization = `Bearer ${tokens.access_token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      credentials: "same-origin", // the refresh cookie (HttpOnly, /api/auth only)
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", "Cannot reach the aidp server. Is it running? Retrying helps if it just restarted.");
  }
}

/** Send a JSON request; returns the decoded body (undefined for 204). Throws ApiError. */
export async function request<T = unknown>(
  method: string,
  path: string,
  opts: RequestOptions = {},
): Promise<T> {
  let response = await send(method, path, opts);
  if (response.status === 401 && opts.auth !== false && (tokens || hasSession())) {
    await refresh();
    response = await send(method, path, opts);
  }
  return decode<T>(response);
}

export async function decode<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) throw errorFrom(response.status, body, response.statusText);
  return body as T;
}

/** The docs/design.md §5 error shape (or FastAPI's `detail`) turned into an ApiError. */
export function errorFrom(status: number, body: unknown, fallback = ""): ApiError {
  const b = body as
    | { error?: { code?: string; message?: string } & Record<string, unknown>; detail?: unknown }
    | undefined;
  if (b && typeof b === "object" && b.error) {
    return new ApiError(status, b.error.code ?? `http_${status}`, b.error.message ?? fallback, b.error);
  }
  if (b && typeof b === "object" && Array.isArray(b.detail)) {
    const msg = (b.detail as { loc?: unknown[]; msg?: string }[])
      .map((d) => `${(d.loc ?? []).filter((p) => p !== "body").join(".")}: ${d.msg ?? ""}`)
      .join("; ");
    return new ApiError(status, "invalid_input", msg);
  }
  const friendly: Record<number, string> = {
    401: "Please log in.",
    403: "You are not allowed to do that.",
    404: "Not found (or not yours).",
    429: "Too many attempts. Wait a moment and try again.",
    502: "A platform service is not answering. Try again shortly.",
    503: "The platform is starting or busy. Try again shortly.",
  };
  return new ApiError(status, `http_${status}`, friendly[status] ?? (fallback || `Request failed (${status})`));
}

export const api = {
  get: <T>(path: string, signal?: AbortSignal) => request<T>("GET", path, { signal }),
  post: <T>(path: string, body?: unknown) => request<T>("POST", path, { body }),
  put: <T>(path: string, body?: unknown) => request<T>("PUT", path, { body }),
  patch: <T>(path: string, body?: unknown) => request<T>("PATCH", path, { body }),
  del: <T>(path: string) => request<T>("DELETE", path),
};

export async function login(email: string, password: string): Promise<void> {
  const pair = await request<Tokens>("POST", "/api/auth/login", {
    body: { email, password }, // refresh token: set as an HttpOnly cookie, not in the body
    auth: false,
  });
  setTokens(pair);
}

export async function register(email: string, password: string): Promise<void> {
  await request("POST", "/api/auth/register", { body: { email, password }, auth: false });
  await login(email, password);
}

export async function logout(): Promise<void> {
  try {
    // the refresh cookie tells auth which session to end; it also clears the cookie
    if (tokens || hasSession()) await request("POST", "/api/auth/logout");
  } catch {
    // logging out of a dead session is still logging out
  }
  setTokens(null);
}

/** Upload a file with progress (XHR: fetch has no upload progress). Returns the upload. */
export function uploadFile(
  file: File,
  onProgress: (done: number, total: number) => void,
): { promise: Promise<Upload>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const promise = (async () => {
    const token = await freshAccessToken();
    return new Promise<Upload>((resolve, reject) => {
      xhr.open("POST", `/api/uploads?filename=${encodeURIComponent(file.name)}`);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        let body: unknown = undefined;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = xhr.responseText;
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body as Upload);
        else reject(errorFrom(xhr.status, body, xhr.statusText));
      };
      xhr.onerror = () => reject(new ApiError(0, "unreachable", "Upload failed: cannot reach the server."));
      xhr.onabort = () => reject(new ApiError(0, "aborted", "Upload cancelled."));
      xhr.send(file);
    });
  })();
  return { promise, abort: () => xhr.abort() };
}

// --- shapes of the gateway's answers (services/gateway/schemas.py) ----------------------
// Generated from the OpenAPI document into api-types.ts (`npm run gen:api`), so they follow
// the gateway's models; the others below are still written by hand.

type Schemas = components["schemas"];

export type RunStatus = Schemas["RunOut"]["status"];
export type Project = Schemas["ProjectOut"];
export type Run = Schemas["RunOut"];

export interface ModelVersion {
  id: string;
  project_id: string;
  run_id: string | null;
  version: string | number | null;
  digest: string | null;
  metrics: Record<string, unknown>;
  lineage: Record<string, unknown>;
  created_at: string | null;
}

export interface Deployment {
  id: string;
  project_id: string;
  model_id: string | null;
  status: string;
  endpoint: string | null;
}

export type Member = Schemas["MemberOut"];

/** A pending invitation (POST …/members answers one; the invitee accepts or declines). */
export type Invitation = Schemas["InvitationOut"];

export type Upload = Schemas["UploadOut"];

export interface Me {
  id: string;
  email: string;
  is_admin: boolean;
}

export interface Envelope {
  id: string;
  type: string;
  occurred_at: string;
  project_id: string | null;
  run_id: string | null;
  payload: Record<string, unknown>;
}

export interface StoredEvent {
  seq: number;
  event: Envelope;
}

/** Accept a bare list or a page like {items|events|lines|names: [...]}. */
export function items<T>(body: unknown): T[] {
  if (Array.isArray(body)) return body as T[];
  if (body && typeof body === "object") {
    for (const key of ["items", "events", "lines", "names"]) {
      const v = (body as Record<string, unknown>)[key];
      if (Array.isArray(v)) return v as T[];
    }
  }
  return [];
}
