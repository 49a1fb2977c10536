// Two runs of a project side by side: status, timings, final metrics and their spec diff.
import { useEffect, useMemo, useState } from "react";
import { stringify } from "yaml";
import { api, type ModelVersion, type Run } from "../api";
import { lineDiff } from "../lineDiff";
import { formatDuration } from "../runState";

function seconds(from: string | null, to: string | null): number | null {
  if (!from || !to) return null;
  return (Date.parse(to) - Date.parse(from)) / 1000;
}

function figures(run: Run, models: ModelVersion[]): Record<string, string> {
  const out: Record<string, string> = {
    status: run.status,
    "total time": formatDuration(seconds(run.created_at, run.finished_at)),
    "training time": formatDuration(seconds(run.training_at, run.deploying_at ?? run.finished_at)),
  };
  const progress = (run.progress ?? {}) as Record<string, unknown>;
  if (typeof progress.step === "number") out.steps = String(progress.step);
  if (typeof progress.loss === "number") out["last loss"] = progress.loss.toFixed(4);
  const model = models.find((m) => m.run_id === run.id);
  for (const [k, v] of Object.entries(model?.metrics ?? {})) {
    if (typeof v === "number" && /(loss|accuracy|f1|perplexity)/.test(k)) out[k] = v.toFixed(4);
  }
  return out;
}

export function RunCompare({ runs, models }: { runs: Run[]; models: ModelVersion[] }) {
  const [a, setA] = useState<string>(runs[1]?.id ?? "");
  const [b, setB] = useState<string>(runs[0]?.id ?? "");
  const [specs, setSpecs] = useState<Record<string, unknown>>({});
  // runs arrive after the first render: pick the latest two once they do
  useEffect(() => {
    if (!a && runs[1]) setA(runs[1].id);
    if (!b && runs[0]) setB(runs[0].id);
  }, [runs, a, b]);

  useEffect(() => {
    for (const id of [a, b]) {
      if (!id || id in specs) continue;
      api.get<{ spec: unknown }>(`/api/runs/${id}/spec`).then(
        (body) => setSpecs((s) => ({ ...s, [id]: body.spec })),
        () => setSpecs((s) => ({ ...s, [id]: null })),
      );
    }
  }, [a, b, specs]);

  const runA = runs.find((r) => r.id === a);
  const runB = runs.find((r) => r.id === b);
  const diff = useMemo(
    () => (specs[a] !== undefined && specs[b] !== undefined ? lineDiff(stringify(specs[a] ?? {}), stringify(specs[b] ?? {})) : null),
    [specs, a, b],
  );
  if (runs.length < 2) return null;
  const fa = runA ? figures(runA, models) : {};
  const fb = runB ? figures(runB, models) : {};
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])];
  const picker = (value: string, set: (v: string) => void, label: string) => (
    <select aria-label={label} value={value} onChange={(e) => set(e.target.value)}>
      {runs.map((r) => (
        <option key={r.id} value={r.id}>
          run {r.number} ({r.status})
        </option>
      ))}
    </select>
  );
  const changed = diff?.filter((l) => l.kind !== "same") ?? [];
  return (
    <section className="card" aria-labelledby="compare-title" data-testid="run-compare">
      <h2 id="compare-title">Compare runs</h2>
      <table className="table small">
        <thead>
          <tr>
            <th scope="col" />
            <th scope="col">{picker(a, setA, "First run")}</th>
            <th scope="col">{picker(b, setB, "Second run")}</th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k}>
              <th scope="row">{k}</th>
              <td>{fa[k] ?? "–"}</td>
              <td className={fa[k] !== fb[k] ? "changed" : undefined}>{fb[k] ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3 className="small">Spec changes</h3>
      {diff === null ? (
        <p className="muted small">Loading the specs…</p>
      ) : changed.length === 0 ? (
        <p className="muted small">Same spec.</p>
      ) : (
        <pre className="mono small diff" data-testid="compare-diff">
          {diff.map((l, i) =>
            l.kind === "same" ? null : (
              <span key={i} className={l.kind === "add" ? "diff-add" : "diff-del"}>
                {l.kind === "add" ? "+ " : "- "}
                {l.text}
                {"\n"}
              </span>
            ),
          )}
        </pre>
      )}
    </section>
  );
}
