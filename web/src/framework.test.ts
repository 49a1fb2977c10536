import { describe, expect, it } from "vitest";
import { DEFAULT_FORM, toSpec, validate, type SpecForm } from "./spec";

const tf = (over: Partial<SpecForm>): SpecForm => ({ ...DEFAULT_FORM, framework: "tensorflow", ...over });

describe("environment.framework", () => {
  it("leaves PyTorch specs as they were", () => {
    expect((toSpec(DEFAULT_FORM) as { environment?: unknown }).environment).toBeUndefined();
  });

  it("writes framework tensorflow with or without packages", () => {
    expect(toSpec(tf({})).environment).toEqual({ python: "3.11", framework: "tensorflow" });
    expect(toSpec(tf({ packages: "pandas" })).environment).toEqual({
      python: "3.11",
      framework: "tensorflow",
      packages: ["pandas"],
    });
    expect(validate(tf({}))).toEqual({});
  });

  it("refuses what TensorFlow cannot run, as the API does", () => {
    expect(validate(tf({ accelerator: "gaudi" })).framework).toMatch(/CPU or an NVIDIA GPU/);
    expect(validate(tf({ nodes: 2 })).framework).toMatch(/one node/);
    expect(validate(tf({ task: "causal-lm" })).framework).toMatch(/no Keras template/);
  });
});
