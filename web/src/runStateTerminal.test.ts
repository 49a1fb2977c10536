// Terminal states drawn right (issue 16 item 5): cancelled is not failed, timers stop,
// the "Training started on N process(es)" line and the ETA go when the run ends.
import { describe, expect, it } from "vitest";
import type { StoredEvent } from "./api";
import { foldRuns } from "./runState";

let seq = 0;
const ev = (type: string, payload: Record<string, unknown>, run = "r1"): StoredEvent => ({
  seq: ++seq,
  event: { id: `e${seq}`, type, occurred_at: new Date(1_700_000_000_000 + seq * 1000).toISOString(), project_id: "p", run_id: run, payload },
});

describe("terminal states", () => {
  it("a cancelled run is cancelled, its running stages stopped, not failed", () => {
    const r = foldRuns([
      ev("ProjectCreated", { spec: { deploy: { enabled: true } } }, "c"),
      ev("ArtifactsCached", { artifacts: [] }, "c"),
      ev("NodesReady", {}, "c"),
      ev("TrainingStarted", { world_size: 2 }, "c"),
      ev("TrainingProgress", { step: 3, total_steps: 10, eta_seconds: 70, samples_per_sec: 5 }, "c"),
      ev("RunCancelled", { by: "u" }, "c"),
    ]).get("c")!;
    expect(r.status).toBe("cancelled");
    expect(r.stages.training.status).toBe("stopped");
    expect(r.stages.training.endedAt).toBeDefined(); // the timer stops
    expect(r.stages.deploying.status).toBe("skipped");
    expect(Object.values(r.stages).some((s) => s.status === "failed" || s.status === "active")).toBe(false);
    expect(r.etaSeconds).toBeNull();
    expect(r.samplesPerSec).toBeNull();
    expect(r.notes.some((n) => n.startsWith("Training started"))).toBe(false);
  });

  it("a failure stops the other running stage's timer", () => {
    const r = foldRuns([
      ev("ProjectCreated", { spec: {} }, "f"),
      ev("ProvisioningProgress", { stage: "packages" }, "f"),
      ev("FetchProgress", { source: "hf://a/b@main", bytes_done: 1, bytes_total: 2 }, "f"),
      ev("ArtifactsFailed", { reason: "not found", retryable: false }, "f"),
    ]).get("f")!;
    expect(r.status).toBe("failed");
    expect(r.stages.fetching.status).toBe("failed");
    expect(r.stages.provisioning.status).toBe("stopped");
    expect(r.stages.provisioning.endedAt).toBeDefined();
    expect(r.reason).toBe("not found");
  });

  it("the training line goes once training ends, and late events change nothing", () => {
    const r = foldRuns([
      ev("ProjectCreated", { spec: { deploy: { enabled: false } } }, "s"),
      ev("TrainingStarted", { world_size: 1 }, "s"),
      ev("TrainingProgress", { step: 10, total_steps: 10, eta_seconds: 0 }, "s"),
      ev("TrainingCompleted", { model_version: "v1", metrics: { eval_accuracy: 0.9 } }, "s"),
      ev("TrainingProgress", { step: 11, total_steps: 10, eta_seconds: 5 }, "s"),
      ev("ProvisioningProgress", { stage: "late" }, "s"),
      ev("TrainingLog", { node: "n0", lines: ["late line"] }, "s"),
    ]).get("s")!;
    expect(r.status).toBe("succeeded");
    expect(r.notes).toEqual([]);
    expect(r.step).toBe(10);
    expect(r.etaSeconds).toBeNull();
    expect(r.stages.provisioning.status).not.toBe("active");
    expect(r.logs.map((l) => l.text)).toEqual(["late line"]);
  });
});

describe("validation metrics", () => {
  it("collects eval figures per step, once per step, ignoring other metrics", () => {
    const r = foldRuns([
      ev("TrainingProgress", { step: 2, loss: 0.9, metrics: { eval_loss: 0.8, eval_accuracy: 0.5, lr_scale: 1 } }, "m"),
      ev("TrainingProgress", { step: 3, loss: 0.7, metrics: {} }, "m"),
      ev("TrainingProgress", { step: 4, loss: 0.6, metrics: { eval_loss: 0.6, eval_accuracy: 0.75, eval_f1: 0.7 } }, "m"),
      ev("TrainingProgress", { step: 4, loss: 0.6, metrics: { eval_loss: 0.6 } }, "m"),
    ]).get("m")!;
    expect(r.evals.eval_loss).toEqual([[2, 0.8], [4, 0.6]]);
    expect(r.evals.eval_accuracy).toEqual([[2, 0.5], [4, 0.75]]);
    expect(r.evals.eval_f1).toEqual([[4, 0.7]]);
    expect(r.evals.lr_scale).toBeUndefined();
    expect(r.losses.length).toBe(4);
  });
});
