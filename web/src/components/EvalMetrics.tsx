// Validation figures measured during training (accuracy, F1…, from 0 to 1) as small lines
// against the step, with the latest value of each; eval loss is drawn in the loss chart.
const W = 600;
const H = 140;
const PAD = { left: 40, right: 12, top: 10, bottom: 22 };
const LABEL: Record<string, string> = { eval_accuracy: "accuracy", eval_f1: "F1 (macro)" };

export function EvalMetrics({ evals, totalSteps }: { evals: Record<string, [number, number][]>; totalSteps: number | null }) {
  const series = Object.entries(evals).filter(([name, pts]) => name !== "eval_loss" && pts.length > 0);
  if (series.length === 0) return null;
  const xs = series.flatMap(([, pts]) => pts.map((p) => p[0]));
  const xMin = 0;
  const xMax = Math.max(...xs, totalSteps ?? 0, 1);
  const x = (v: number) => PAD.left + ((v - xMin) / (xMax - xMin)) * (W - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - Math.max(0, Math.min(1, v))) * (H - PAD.top - PAD.bottom);
  return (
    <figure className="chart" data-testid="eval-metrics">
      <dl className="stats">
        {series.map(([name, pts]) => (
          <div key={name}>
            <dt>Validation {LABEL[name] ?? name.replace(/^eval_/, "")}</dt>
            <dd>{pts[pts.length - 1][1].toFixed(3)}</dd>
          </div>
        ))}
      </dl>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`Validation metrics against step: ${series.map(([n]) => LABEL[n] ?? n).join(", ")}`}>
        {[0, 0.5, 1].map((t) => (
          <g key={t}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(t)} y2={y(t)} className="grid" />
            <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end" className="axis">
              {t}
            </text>
          </g>
        ))}
        {series.map(([name, pts], i) => (
          <g key={name} className={`series series-${i}`}>
            <path d={pts.map(([s, v], j) => `${j ? "L" : "M"}${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} className="line" fill="none" />
            {pts.map(([s, v]) => (
              <circle key={s} cx={x(s)} cy={y(v)} r={3} className="dot" />
            ))}
          </g>
        ))}
      </svg>
      <figcaption className="muted">validation {series.map(([n]) => LABEL[n] ?? n).join(" and ")} (0–1) against training step</figcaption>
    </figure>
  );
}
