import { describe, expect, it } from "vitest";
import { DEFAULT_FORM, toSpec, toYaml, validate } from "./spec";

describe("spec form", () => {
  it("the defaults make a valid spec with the docs/design.md §4 shape", () => {
    expect(validate(DEFAULT_FORM)).toEqual({});
    const spec = toSpec(DEFAULT_FORM);
    expect(spec.model).toBe("hf://sentence-transformers/all-MiniLM-L6-v2@main");
    expect(spec.dataset).toBe("hf://datasets/stanfordnlp/imdb@main");
    expect(spec.deploy).toEqual({ enabled: true });
    expect(toYaml(spec)).toContain("task: text-classification");
  });

  it("names the field in error", () => {
    const errors = validate({ ...DEFAULT_FORM, name: "Bad Name", learningRate: "-1", datasetKind: "upload" });
    expect(Object.keys(errors).sort()).toEqual(["learningRate", "name", "uploadUri"]);
  });

  it("builds kaggle, ssh hosts and custom scripts", () => {
    const f = {
      ...DEFAULT_FORM,
      datasetKind: "kaggle" as const,
      datasetId: "owner/slug",
      datasetRevision: "3",
      provider: "ssh" as const,
      hosts: "ubuntu@10.0.0.5:2222",
      task: "custom" as const,
      script: "print(1)",
    };
    expect(validate(f)).toEqual({});
    const spec = toSpec(f) as { dataset: string; resources: { hosts: unknown[] }; train: { script: string } };
    expect(spec.dataset).toBe("kaggle://owner/slug@3");
    expect(spec.resources.hosts).toEqual([{ address: "10.0.0.5", user: "ubuntu", port: 2222 }]);
    expect(spec.train.script).toBe("print(1)");
  });
});
