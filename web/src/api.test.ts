import { beforeAll, describe, expect, it, vi } from "vitest";

type Api = typeof import("./api");
let api: Api;
const calls: string[] = [];
const store = new Map<string, string>([["aidp.tokens", '{"refresh_token":"legacy"}']]);
let cookie = "";

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

beforeAll(async () => {
  vi.stubGlobal("localStorage", {
    getItem: (k: string) => store.get(k) ?? null,
    setItem: (k: string, v: string) => void store.set(k, v),
    removeItem: (k: string) => void store.delete(k),
  });
  vi.stubGlobal("window", { setTimeout, clearTimeout });
  // A gateway whose access token "old" has expired; the refresh cookie "r1" (HttpOnly: the
  // browser sends it, scripts never see it) rotates to access "new" and cookie "r2" once.
  vi.stubGlobal("fetch", async (path: string, init: RequestInit) => {
    const auth = (init.headers as Record<string, string>).Authorization ?? "";
    calls.push(`${init.method} ${path} ${auth}`.trim());
    if (path === "/api/auth/refresh") {
      if (init.body !== undefined) return json(422, { error: { code: "invalid", message: "no body expected" } });
      if (cookie === "r1") {
        cookie = "r2";
        return json(200, { access_token: "new", refresh_token: null });
      }
      return json(401, { error: { code: "unauthenticated", message: "refresh token reused" } });
    }
    if (auth !== "Bearer new") return json(401, { error: { code: "unauthenticated", message: "expired" } });
    if (path === "/api/projects" && init.method === "POST") {
      return json(422, { detail: [{ loc: ["body", "spec", "model"], msg: "bad uri" }] });
    }
    return json(200, [{ id: "p1" }]);
  });
  api = await import("./api");
});

describe("api", () => {
  it("refreshes an expired access token silently and retries once", async () => {
    cookie = "r1";
    api.setTokens({ access_token: "old" });
    calls.length = 0;
    expect(await api.api.get("/api/projects")).toEqual([{ id: "p1" }]);
    expect(calls).toEqual(["GET /api/projects Bearer old", "POST /api/auth/refresh", "GET /api/projects Bearer new"]);
    expect(api.getTokens()).toEqual({ access_token: "new" });
    expect(cookie).toBe("r2");
    // no token of any kind in localStorage: only the session marker
    expect([...store.entries()]).toEqual([["aidp.session", "1"]]);
  });

  it("names the field of a 422 and keeps the server's message", async () => {
    await expect(api.api.post("/api/projects", {})).rejects.toMatchObject({ status: 422, message: "spec.model: bad uri" });
  });

  it("logs out with a reason when the refresh token is spent", async () => {
    const reasons: (string | undefined)[] = [];
    const off = api.onTokens((t, why) => t === null && reasons.push(why));
    cookie = "spent";
    api.setTokens({ access_token: "old" });
    await expect(api.api.get("/api/projects")).rejects.toMatchObject({ status: 401 });
    expect(api.getTokens()).toBeNull();
    expect(api.hasSession()).toBe(false);
    expect(reasons).toEqual(["Your session expired. Please log in again."]);
    off();
  });

  it("explains an unreachable server", async () => {
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    await expect(api.api.get("/api/projects")).rejects.toMatchObject({ status: 0, code: "unreachable" });
  });
});
