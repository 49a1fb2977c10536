import { describe, expect, it } from "vitest";
import { lineDiff } from "./lineDiff";

describe("lineDiff", () => {
  it("keeps common lines and marks changes", () => {
    const d = lineDiff("a\nb: 1\nc\n", "a\nb: 2\nc\nd\n");
    expect(d).toEqual([
      { kind: "same", text: "a" },
      { kind: "del", text: "b: 1" },
      { kind: "add", text: "b: 2" },
      { kind: "same", text: "c" },
      { kind: "add", text: "d" },
    ]);
    expect(lineDiff("x\n", "x\n").every((l) => l.kind === "same")).toBe(true);
  });
});
