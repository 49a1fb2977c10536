// Loss against step as a plain SVG line chart (no chart library).

const W = 600;
const H = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function ticks(min: number, max: number, n: number): number[] {
  if (max === min) return [min];
  return Array.from({ length: n }, (_, i) => min + ((max - min) * i) / (n - 1));
}

const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(3));

export function LossChart({
  points,
  totalSteps,
  evalPoints = [],
}: {
  points: [number, number][];
  totalSteps: number | null;
  /** validation loss at the steps it was measured (drawn dashed beside the training loss) */
  evalPoints?: [number, number][];
}) {
  if (points.length === 0) {
    return <p className="muted chart-empty">The loss curve appears when training reports its first steps.</p>;
  }
  const all = [...points, ...evalPoints];
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xMin = Math.min(...xs, 0);
  const xMax = Math.max(...xs, totalSteps ?? 0, xMin + 1);
  let yMin = Math.min(...ys);
  let yMax = Math.max(...ys);
  if (yMax - yMin < 1e-9) {
    yMin -= 0.5;
    yMax += 0.5;
  }
  const x = (v: number) => PAD.left + ((v - xMin) / (xMax - xMin)) * (W - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - (v - yMin) / (yMax - yMin)) * (H - PAD.top - PAD.bottom);
  const line = (pts: [number, number][]) => pts.map(([s, l], i) => `${i ? "L" : "M"}${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(" ");
  const path = line(points);
  const [lastStep, lastLoss] = points[points.length - 1];
  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`Loss against step: ${points.length} points, latest loss ${fmt(lastLoss)} at step ${lastStep}`}
        data-testid="loss-chart"
      >
        {ticks(yMin, yMax, 4).map((t) => (
          <g key={`y${t}`}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(t)} y2={y(t)} className="grid" />
            <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end" className="axis">
              {fmt(t)}
            </text>
          </g>
        ))}
        {ticks(xMin, xMax, 5).map((t) => (
          <text key={`x${t}`} x={x(t)} y={H - 8} textAnchor="middle" className="axis">
            {Math.round(t)}
          </text>
        ))}
        <path d={path} className="line" fill="none" />
        <circle cx={x(lastStep)} cy={y(lastLoss)} r={4} className="dot" />
        {evalPoints.length > 0 && <path d={line(evalPoints)} className="line line-eval" fill="none" data-testid="eval-loss-line" />}
        {evalPoints.map(([s, l]) => (
          <circle key={`e${s}`} cx={x(s)} cy={y(l)} r={3} className="dot dot-eval" />
        ))}
      </svg>
      <figcaption className="muted">
        {evalPoints.length > 0 ? "training loss (solid) and validation loss (dashed)" : "loss"} (y) against training step (x)
      </figcaption>
    </figure>
  );
}
