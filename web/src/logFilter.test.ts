import { describe, expect, it } from "vitest";
import { filterLines } from "./logFilter";

const line = (seq: number, text: string, node = "n0") => ({ seq, node, stream: "stdout", text });

describe("log filter", () => {
  it("keeps the lines containing the query, case-insensitive; empty keeps all", () => {
    const lines = [line(1, "step 1 loss 0.5"), line(2, "Warning: slow disk"), line(3, "LOSS 0.4", "n1")];
    expect(filterLines(lines, "loss").map((l) => l.seq)).toEqual([1, 3]);
    expect(filterLines(lines, "  ").length).toBe(3);
    expect(filterLines(lines, "n1").map((l) => l.seq)).toEqual([3]);
    expect(filterLines(lines, "nothing")).toEqual([]);
  });
});
