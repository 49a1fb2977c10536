import { describe, expect, it } from "vitest";
import { chatDelta, SseParser } from "./sse";

describe("SseParser", () => {
  it("returns complete events and holds a partial one", () => {
    const p = new SseParser();
    expect(p.push('data: {"a":1}\n\ndata: {"b"')).toEqual(['{"a":1}']);
    expect(p.push(':2}\n\n')).toEqual(['{"b":2}']);
    expect(p.push("data: [DONE]\r\n\r\n")).toEqual(["[DONE]"]);
  });

  it("ignores comments and joins multi-line data", () => {
    const p = new SseParser();
    expect(p.push(": ping\n\ndata: x\ndata: y\n\n")).toEqual(["x\ny"]);
  });
});

describe("chatDelta", () => {
  it("reads content, finish reason, done and errors", () => {
    expect(chatDelta('{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}').content).toBe("Hi");
    expect(chatDelta('{"choices":[{"delta":{},"finish_reason":"stop"}]}').finishReason).toBe("stop");
    expect(chatDelta('{"choices":[],"usage":{"total_tokens":3}}').content).toBe("");
    expect(chatDelta("[DONE]").done).toBe(true);
    expect(chatDelta('{"error":{"message":"boom"}}').error).toBe("boom");
    expect(chatDelta("{oops").error).not.toBeNull();
  });
});
