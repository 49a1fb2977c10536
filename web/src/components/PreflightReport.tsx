// The pre-flight check of an LLM run's data (DatasetValidated / ValidationFailed), issue 15:
// rows checked, tokens, the method, the estimate, and the flagged rows with their numbers.
import type { StoredEvent } from "../api";

interface Issue {
  file: string;
  row: number;
  problem: string;
  severity?: "error" | "warning";
}

const SHOWN = 20;

function duration(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The run's pre-flight report, or nothing when the run had no check. */
export function PreflightReport({ events, runId }: { events: StoredEvent[]; runId: string | null }) {
  const found = events.find(
    (e) => e.event.run_id === runId && (e.event.type === "DatasetValidated" || e.event.type === "ValidationFailed"),
  );
  if (!runId || !found) return null;
  const p = found.event.payload;
  const failed = found.event.type === "ValidationFailed";
  const issues = (Array.isArray(p.issues) ? p.issues : []) as Issue[];
  const stats: [string, string][] = [["Rows checked", `${num(p.rows_checked) ?? 0}${num(p.rows_total) ? ` of ${p.rows_total}` : ""}`]];
  if (failed) stats.push(["Malformed rows", String(num(p.error_rows) ?? issues.length)]);
  else {
    if (num(p.tokens_mean) !== null) stats.push(["Tokens per row", `${Math.round(p.tokens_mean as number)} avg · ${p.tokens_max} max`]);
    if (num(p.over_max_length)) stats.push(["Truncated", `${p.over_max_length} over max_length ${p.max_length}`]);
    if (typeof p.method === "string") stats.push(["Method", p.method]);
    if (num(p.estimated_steps) !== null)
      stats.push(["Estimate", `~${p.estimated_steps} steps${num(p.estimated_seconds) !== null ? ` · ~${duration(p.estimated_seconds as number)}` : ""}`]);
  }
  return (
    <section className="card" aria-labelledby="preflight-title" data-testid="preflight">
      <h2 id="preflight-title">Pre-flight check {failed ? "failed" : "passed"}</h2>
      {failed && (
        <p className="banner banner-error" role="alert">
          {String(p.reason ?? "The data did not pass the check.")} Nothing was provisioned.
        </p>
      )}
      <dl className="stats">
        {stats.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      {issues.length > 0 && (
        <table className="table small" data-testid="preflight-issues">
          <thead>
            <tr>
              <th scope="col">File</th>
              <th scope="col">Row</th>
              <th scope="col">Problem</th>
            </tr>
          </thead>
          <tbody>
            {issues.slice(0, SHOWN).map((i) => (
              <tr key={`${i.file}:${i.row}:${i.problem}`}>
                <td className="mono">{i.file}</td>
                <td>{i.row}</td>
                <td>
                  {i.severity === "warning" ? "⚠ " : ""}
                  {i.problem}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {issues.length > SHOWN && <p className="small muted">… and {issues.length - SHOWN} more</p>}
      {(Array.isArray(p.notes) ? (p.notes as string[]) : []).map((n) => (
        <p key={n} className="small muted">
          {n}
        </p>
      ))}
    </section>
  );
}
