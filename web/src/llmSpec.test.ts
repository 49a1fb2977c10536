import { describe, expect, it } from "vitest";
import { DEFAULT_FORM, toSpec, validate, type SpecForm } from "./spec";

const chat = (over: Partial<SpecForm>): SpecForm => ({ ...DEFAULT_FORM, task: "chat", ...over });
type Train = { method?: string; args: Record<string, number> };

describe("LLM tasks (issue 15)", () => {
  it("writes train.method and the LoRA args only for chat and causal-lm", () => {
    const train = toSpec(chat({ method: "lora", loraR: "8", maxLength: "512" })).train as Train;
    expect(train.method).toBe("lora");
    expect(train.args.lora_r).toBe(8);
    expect(train.args.max_length).toBe(512);
    const plain = toSpec({ ...DEFAULT_FORM, method: "lora", loraR: "8" }).train as Train;
    expect(plain.method).toBeUndefined();
    expect(plain.args.lora_r).toBeUndefined();
  });

  it("leaves the method out when automatic and drops lora_r for full fine-tuning", () => {
    expect((toSpec(chat({})).train as Train).method).toBeUndefined();
    const full = toSpec(chat({ method: "full", loraR: "8" })).train as Train;
    expect(full.method).toBe("full");
    expect(full.args.lora_r).toBeUndefined();
  });

  it("refuses QLoRA without CUDA, as the API does", () => {
    expect(validate(chat({ method: "qlora" })).method).toMatch(/NVIDIA GPU/);
    expect(validate(chat({ method: "qlora", accelerator: "cuda" })).method).toBeUndefined();
    expect(validate(chat({ loraR: "x" })).loraR).toMatch(/whole number/);
  });
});
