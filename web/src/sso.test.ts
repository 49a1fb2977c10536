import { describe, expect, it, vi } from "vitest";

// Back from single sign-on, the callback sent the browser to /#/sso-complete with the
// session in the HttpOnly refresh cookie: loading the app restores the session with one
// refresh and drops the marker from the address bar.
describe("sso completion", () => {
  it("marks the session, cleans the hash and trades the cookie for an access token", async () => {
    const store = new Map<string, string>();
    const replaced: string[] = [];
    const calls: string[] = [];
    vi.stubGlobal("localStorage", {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
      removeItem: (k: string) => void store.delete(k),
    });
    vi.stubGlobal("window", {
      setTimeout,
      clearTimeout,
      location: { hash: "#/sso-complete", pathname: "/", search: "" },
      history: { replaceState: (_s: unknown, _t: string, url: string) => replaced.push(url) },
    });
    vi.stubGlobal("fetch", async (path: string, init: RequestInit) => {
      calls.push(`${init.method} ${path}`);
      const claims = btoa(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 900 }));
      return new Response(JSON.stringify({ access_token: `h.${claims}.s` }), {
        status: 200,
        headers: { "Content-Type": "application/json" },
      });
    });
    const api = await import("./api");
    expect(store.get("aidp.session")).toBe("1");
    expect(replaced).toEqual(["/#/"]);
    await vi.waitFor(() => expect(api.getTokens()).not.toBeNull());
    expect(calls).toEqual(["POST /api/auth/refresh"]);
  });
});
