import { describe, expect, it } from "vitest";
import type { StoredEvent } from "./api";
import { foldRuns, formatBytes, formatDuration } from "./runState";

let seq = 0;
const ev = (type: string, payload: Record<string, unknown>, run = "r1"): StoredEvent => ({
  seq: ++seq,
  event: { id: `e${seq}`, type, occurred_at: new Date(1_700_000_000_000 + seq * 1000).toISOString(), project_id: "p", run_id: run, payload },
});

describe("foldRuns", () => {
  it("follows a run from creation to deployment", () => {
    const events = [
      ev("ProjectCreated", { spec: { deploy: { enabled: true } } }),
      ev("FetchProgress", { source: "hf://a/b@main", bytes_done: 5, bytes_total: 10 }),
      ev("ProvisioningProgress", { stage: "packages", percent: 40 }),
      ev("ArtifactsCached", { artifacts: [{ source: "hf://a/b", size_bytes: 10 }] }),
      ev("NodesReady", { nodes: [], env: {} }),
      ev("TrainingStarted", { world_size: 1 }),
      ev("TrainingProgress", { step: 5, total_steps: 10, loss: 0.7 }),
      ev("TrainingLog", { node: "n0", lines: ["\u001b[1mhello\u001b[0m \u001b"] }),
      ev("TrainingProgress", { step: 10, total_steps: 10, loss: 0.3 }),
      ev("TrainingCompleted", { model_version: "v1", metrics: { accuracy: 0.9 } }),
      ev("ModelDeployed", { deployment_id: "d1", endpoint: "/api/deployments/d1/predict" }),
      ev("TrainingFailed", { reason: "other run" }, "r2"),
    ];
    const runs = foldRuns(events);
    const r1 = runs.get("r1")!;
    expect(r1.status).toBe("deployed");
    expect(r1.losses).toEqual([[5, 0.7], [10, 0.3]]);
    expect(r1.stages.fetching.status).toBe("done");
    expect(r1.stages.provisioning.status).toBe("done");
    expect(r1.stages.training.endedAt! - r1.stages.training.startedAt!).toBe(4000);
    expect(r1.deploymentId).toBe("d1");
    expect(r1.logs.map((l) => l.text)).toEqual(["hello \u001b"]);
    expect(Object.keys(r1.fetch)).toEqual(["hf://a/b"]);
    expect(runs.get("r2")!.status).toBe("failed");
  });

  it("treats retryable failures as notes and final statuses as sticky", () => {
    const runs = foldRuns([
      ev("TrainingFailed", { reason: "oom", retryable: true }, "r3"),
      ev("RunCancelled", {}, "r3"),
      ev("TrainingProgress", { step: 1 }, "r3"),
    ]);
    const r3 = runs.get("r3")!;
    expect(r3.status).toBe("cancelled");
    expect(r3.notes[0]).toContain("retrying");
  });
});

describe("formatting", () => {
  it("formats durations and sizes", () => {
    expect([formatDuration(5), formatDuration(65), formatDuration(3700), formatDuration(null)]).toEqual(["5s", "1m 05s", "1h 01m", "–"]);
    expect([formatBytes(512), formatBytes(1_500_000)]).toEqual(["512 B", "1.5 MB"]);
  });
});
