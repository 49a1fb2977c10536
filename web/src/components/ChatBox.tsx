// The chat box of an LLM deployment (tasks causal-lm and chat): the OpenAI-compatible API
// of the gateway (/api/deployments/{id}/v1), replies streamed token by token (fetch +
// ReadableStream, SSE parsed in ../sse.ts), and an `openai` Python client snippet.
import { type FormEvent, useEffect, useRef, useState } from "react";
import { api, ApiError, decode, freshAccessToken } from "../api";
import { chatDelta, SseParser } from "../sse";
import { ErrorBanner } from "./ui";

interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}

export const LLM_TASKS = ["causal-lm", "chat"];

export function openaiSnippet(baseUrl: string, model: string): string {
  return [
    "from openai import OpenAI",
    "",
    "client = OpenAI(",
    `    base_url="${baseUrl}",`,
    '    api_key="<an aidp API token: aidp tokens create NAME>",',
    ")",
    "reply = client.chat.completions.create(",
    `    model="${model}",`,
    '    messages=[{"role": "user", "content": "Hello!"}],',
    ")",
    "print(reply.choices[0].message.content)",
  ].join("\n");
}

export function ChatBox({ deploymentId, canEdit }: { deploymentId: string; canEdit: boolean }) {
  const base = `/api/deployments/${deploymentId}/v1`;
  const [model, setModel] = useState<string | null>(null);
  const [system, setSystem] = useState("");
  const [messages, setMessages] = useState<Message[]>([]);
  const [input, setInput] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => {
    if (!canEdit) return; // calling the model needs the editor role (as /predict)
    let stop = false;
    api.get<{ data: { id: string }[] }>(`${base}/models`).then(
      (body) => !stop && setModel(body.data[0]?.id ?? null),
      (err) => !stop && setError(err),
    );
    return () => {
      stop = true;
      abort.current?.abort();
    };
  }, [base, canEdit]);

  async function send(e: FormEvent) {
    e.preventDefault();
    const text = input.trim();
    if (!text || !model || busy) return;
    const history: Message[] = [...messages, { role: "user", content: text }];
    const sent = system.trim() ? [{ role: "system", content: system.trim() } as Message, ...history] : history;
    setMessages([...history, { role: "assistant", content: "" }]);
    setInput("");
    setBusy(true);
    setError(null);
    const controller = new AbortController();
    abort.current = controller;
    const append = (piece: string) =>
      setMessages((all) => {
        const last = all[all.length - 1];
        return [...all.slice(0, -1), { ...last, content: last.content + piece }];
      });
    try {
      const token = await freshAccessToken();
      const response = await fetch(`${base}/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", Authorization: `Bearer ${token}` },
        // no max_tokens: the server allows what the model's context leaves (at most 512)
        body: JSON.stringify({ model, messages: sent, stream: true }),
        signal: controller.signal,
      });
      if (!response.ok || !response.body) {
        await decode(response); // throws the server's error
        throw new ApiError(response.status, "no_stream", "The server sent no stream.");
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const data of parser.push(decoder.decode(value, { stream: true }))) {
          const delta = chatDelta(data);
          if (delta.error) throw new ApiError(502, "stream_error", delta.error);
          if (delta.content) append(delta.content);
        }
      }
    } catch (err) {
      if ((err as Error).name !== "AbortError") setError(err);
      // a reply that never started is not part of the conversation
      setMessages((all) => (all.length && all[all.length - 1].role === "assistant" && !all[all.length - 1].content ? all.slice(0, -1) : all));
    } finally {
      setBusy(false);
      abort.current = null;
    }
  }

  const baseUrl = `${window.location.origin}${base}`;
  return (
    <section className="card" aria-labelledby="chat-title" data-testid="chatbox">
      <h2 id="chat-title">Chat</h2>
      <p className="small muted">
        An OpenAI-compatible endpoint: <code className="break">{baseUrl}</code>
        {model && (
          <>
            {" "}
            — model <code>{model}</code>
          </>
        )}
      </p>
      <ErrorBanner error={error} />
      {canEdit ? (
        <>
          <div className="chat-log" aria-live="polite" data-testid="chat-log">
            {messages.map((m, i) => (
              <p key={i} className={`chat-msg chat-${m.role}`} data-role={m.role}>
                <strong>{m.role === "user" ? "You" : "Model"}:</strong> <span className="chat-text">{m.content}</span>
              </p>
            ))}
          </div>
          <form onSubmit={send} className="tryit">
            <label htmlFor="chat-system" className="small">
              System prompt (optional)
            </label>
            <input id="chat-system" value={system} onChange={(e) => setSystem(e.target.value)} />
            <label htmlFor="chat-input" className="small">
              Message
            </label>
            <textarea id="chat-input" rows={2} value={input} onChange={(e) => setInput(e.target.value)} />
            <div className="row">
              <button type="submit" className="btn btn-primary" disabled={busy || !model}>
                {busy ? "Answering…" : "Send"}
              </button>
              {busy && (
                <button type="button" className="btn" onClick={() => abort.current?.abort()}>
                  Stop
                </button>
              )}
              {!busy && messages.length > 0 && (
                <button type="button" className="btn" onClick={() => setMessages([])}>
                  New conversation
                </button>
              )}
            </div>
          </form>
        </>
      ) : (
        <p className="small muted">Chatting with the model needs the editor role on this project.</p>
      )}
      <details>
        <summary className="small">Use it from Python (openai client)</summary>
        <pre className="mono small spec" data-testid="openai-snippet">
          {openaiSnippet(baseUrl, model ?? "<model id from client.models.list()>")}
        </pre>
      </details>
    </section>
  );
}
