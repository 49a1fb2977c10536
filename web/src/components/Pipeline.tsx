// The run as stages: (fetching ∥ provisioning) → training → deploying, with timings and progress.
import { formatBytes, formatDuration, type RunView, type Stage, type StageName } from "../runState";
import { ProgressBar } from "./ui";

const LABEL: Record<StageName, string> = {
  fetching: "Fetching model & data",
  provisioning: "Provisioning compute",
  training: "Training",
  deploying: "Deploying",
};

const ICON: Record<string, string> = { pending: "○", active: "◐", done: "✓", failed: "✕", skipped: "–", stopped: "■" };

function elapsed(stage: Stage, now: number): string {
  if (!stage.startedAt) return "";
  const end = stage.endedAt ?? (stage.status === "active" ? now : stage.startedAt);
  return formatDuration((end - stage.startedAt) / 1000);
}

function StageBox({ name, view, now }: { name: StageName; view: RunView; now: number }) {
  const stage = view.stages[name];
  return (
    <li className={`stage stage-${stage.status}`} data-stage={name} data-status={stage.status}>
      <div className="stage-head">
        <span className="stage-icon" aria-hidden="true">
          {ICON[stage.status]}
        </span>
        <span className="stage-name">{LABEL[name]}</span>
        <span className="stage-time">{elapsed(stage, now)}</span>
      </div>
      <span className="sr-only">{stage.status}</span>
      {name === "fetching" &&
        Object.entries(view.fetch).map(([src, f]) => (
          <div key={src} className="stage-detail">
            <div className="stage-row">
              <span className="mono ellipsis" title={src}>
                {src}
              </span>
              <span>
                {f.cached ? "cached " : ""}
                {formatBytes(f.done)} / {formatBytes(f.total)}
              </span>
            </div>
            <ProgressBar value={f.done} max={f.total} label={`Download of ${src}`} />
          </div>
        ))}
      {name === "provisioning" && view.provisioning && stage.status === "active" && (
        <div className="stage-detail">
          <div className="stage-row">
            <span>{view.provisioning.stage}</span>
            <span className="muted ellipsis">{view.provisioning.message}</span>
          </div>
          <ProgressBar value={view.provisioning.percent ?? 0} max={view.provisioning.percent === null ? null : 100} label="Provisioning" />
        </div>
      )}
      {name === "training" && stage.status !== "pending" && (
        <div className="stage-detail">
          <div className="stage-row">
            <span>
              step {view.step}
              {view.totalSteps ? ` / ${view.totalSteps}` : ""}
            </span>
            <span>ETA {formatDuration(view.etaSeconds)}</span>
          </div>
          <ProgressBar value={view.step} max={view.totalSteps} label="Training steps" />
        </div>
      )}
      {name === "deploying" && view.endpoint && (
        <div className="stage-detail">
          <span className="mono ellipsis" title={view.endpoint}>
            {view.endpoint}
          </span>
        </div>
      )}
      {name === "training" && view.modelVersion && <div className="stage-detail">model {view.modelVersion}</div>}
    </li>
  );
}

export function Pipeline({ view, now }: { view: RunView; now: number }) {
  return (
    <ol className="pipeline" aria-label="Pipeline stages">
      <li className="stage-parallel">
        <ol>
          <StageBox name="fetching" view={view} now={now} />
          <StageBox name="provisioning" view={view} now={now} />
        </ol>
      </li>
      <li className="arrow" aria-hidden="true">
        →
      </li>
      <StageBox name="training" view={view} now={now} />
      {view.stages.deploying.status !== "skipped" && (
        <>
          <li className="arrow" aria-hidden="true">
            →
          </li>
          <StageBox name="deploying" view={view} now={now} />
        </>
      )}
    </ol>
  );
}
