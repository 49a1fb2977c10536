// Server-sent events of the OpenAI-compatible API (chat completion chunks), parsed as they
// arrive: bytes → text → complete "data: ..." events (a chunk may end mid-event).

export interface ChatDelta {
  content: string; // text to append ("" for role or finish chunks)
  finishReason: string | null;
  done: boolean; // "data: [DONE]"
  error: string | null; // an error event sent after the headers
}

/** Splits a stream of text into SSE events; keeps an unfinished event for the next call. */
export class SseParser {
  private rest = "";

  /** The `data` payloads of the complete events in `text` (and what was held before). */
  push(text: string): string[] {
    this.rest += text.replace(/\r\n/g, "\n");
    const out: string[] = [];
    let cut: number;
    while ((cut = this.rest.indexOf("\n\n")) >= 0) {
      const block = this.rest.slice(0, cut);
      this.rest = this.rest.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) out.push(data);
    }
    return out;
  }
}

/** One event's payload as a chat delta (choices[0].delta.content, finish_reason). */
export function chatDelta(data: string): ChatDelta {
  if (data.trim() === "[DONE]") return { content: "", finishReason: null, done: true, error: null };
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    return { content: "", finishReason: null, done: false, error: "the server sent an unreadable event" };
  }
  const c = chunk as {
    error?: { message?: string };
    choices?: { delta?: { content?: string | null }; text?: string; finish_reason?: string | null }[];
  };
  if (c.error) return { content: "", finishReason: null, done: false, error: c.error.message ?? "generation failed" };
  const choice = c.choices?.[0];
  return {
    content: choice?.delta?.content ?? choice?.text ?? "",
    finishReason: choice?.finish_reason ?? null,
    done: false,
    error: null,
  };
}
