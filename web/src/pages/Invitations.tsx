// The current user's pending project invitations, with Accept / Decline (projects page).
import { useCallback, useEffect, useState } from "react";
import { api, items, type Invitation } from "../api";
import { ErrorBanner, timeAgo } from "../components/ui";

/**
 * Lists `GET /api/invitations` (nothing when there are none). Accepting joins the project
 * with the invited role and calls `onJoined` so the project list reloads; declining
 * removes the invitation.
 */
export function MyInvitations({ onJoined }: { onJoined: () => void }) {
  const [invitations, setInvitations] = useState<Invitation[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      setInvitations(items<Invitation>(await api.get("/api/invitations")));
    } catch (err) {
      setError(err);
    }
  }, []);
  useEffect(() => {
    void load();
    const timer = window.setInterval(() => void load(), 15000);
    return () => window.clearInterval(timer);
  }, [load]);

  async function answer(invitation: Invitation, verb: "accept" | "decline") {
    setBusy(invitation.id);
    setError(null);
    try {
      await api.post(`/api/invitations/${invitation.id}/${verb}`);
      setInvitations((list) => list.filter((i) => i.id !== invitation.id));
      if (verb === "accept") onJoined();
    } catch (err) {
      setError(err);
      void load(); // withdrawn meanwhile: show what is left
    } finally {
      setBusy(null);
    }
  }

  if (invitations.length === 0 && !error) return null;
  return (
    <section className="card" aria-labelledby="invitations-title" data-testid="invitations">
      <h2 id="invitations-title">Invitations</h2>
      <ErrorBanner error={error} />
      <ul className="members">
        {invitations.map((i) => (
          <li key={i.id} data-invitation={i.project_name ?? i.project_id}>
            <span>
              <strong>{i.project_name ?? i.project_id}</strong> as <span className="badge">{i.role}</span>{" "}
              <span className="small muted">
                from {i.invited_by_email} · {timeAgo(i.created_at)}
              </span>
            </span>
            <span className="actions">
              <button
                type="button"
                className="btn btn-small btn-primary"
                disabled={busy === i.id}
                onClick={() => void answer(i, "accept")}
                aria-label={`Accept the invitation to ${i.project_name ?? i.project_id}`}
              >
                Accept
              </button>
              <button
                type="button"
                className="btn btn-small btn-ghost"
                disabled={busy === i.id}
                onClick={() => void answer(i, "decline")}
                aria-label={`Decline the invitation to ${i.project_name ?? i.project_id}`}
              >
                Decline
              </button>
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
