// Live project events over the WebSocket (docs/design.md §6): authenticate, subscribe after the last
// seq seen, and on any drop reconnect with backoff and resubscribe — no gap, no duplicate.
import { useEffect, useRef, useState } from "react";
import { freshAccessToken, refresh, type StoredEvent } from "./api";

export type StreamState = "connecting" | "live" | "reconnecting" | "closed";

export interface StreamHandlers {
  onEvents: (events: StoredEvent[]) => void;
  onState: (state: StreamState, error?: string) => void;
}

export class ProjectStream {
  private ws: WebSocket | null = null;
  private lastSeq: number;
  private failures = 0;
  private stopped = false;
  private timer: number | undefined;
  private batch: StoredEvent[] = [];
  private flushScheduled = false;

  constructor(
    private projectId: string,
    private handlers: StreamHandlers,
    after = 0,
  ) {
    this.lastSeq = after;
    void this.connect();
  }

  private url(): string {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${window.location.host}/api/ws`;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.handlers.onState(this.failures ? "reconnecting" : "connecting");
    let token: string;
    try {
      token = await freshAccessToken();
    } catch {
      this.handlers.onState("closed", "Your session expired. Please log in again.");
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token }));
      ws.send(JSON.stringify({ type: "subscribe", project_id: this.projectId, after: this.lastSeq }));
    };
    ws.onmessage = (msg) => {
      let data: { type?: string; seq?: number; event?: StoredEvent["event"]; message?: string };
      try {
        data = JSON.parse(String(msg.data));
      } catch {
        return;
      }
      if (data.type === "subscribed") {
        this.failures = 0;
        this.handlers.onState("live");
      } else if (data.type === "event" && typeof data.seq === "number" && data.event) {
        if (data.seq <= this.lastSeq) return; // already seen before a reconnect
        this.lastSeq = data.seq;
        this.failures = 0;
        this.batch.push({ seq: data.seq, event: data.event });
        this.scheduleFlush();
      }
    };
    ws.onclose = (e) => {
      this.ws = null;
      if (this.stopped) return;
      if (e.code === 4403) {
        this.handlers.onState("closed", "You do not have access to this project.");
        return;
      }
      if (e.code === 4401 && this.failures === 0) {
        this.failures++;
        void refresh().then(
          () => this.connect(),
          () => this.handlers.onState("closed", "Your session expired. Please log in again."),
        );
        return;
      }
      this.failures++;
      const delay = Math.min(500 * 2 ** Math.min(this.failures, 5), 10_000);
      this.handlers.onState("reconnecting", e.code === 1002 ? "The server refused a message." : undefined);
      this.timer = window.setTimeout(() => void this.connect(), delay);
    };
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Batch bursts (a backfill of thousands of events) into one render.
    window.setTimeout(() => {
      this.flushScheduled = false;
      const batch = this.batch;
      this.batch = [];
      if (batch.length && !this.stopped) this.handlers.onEvents(batch);
    }, 50);
  }

  close(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000);
  }
}

/** All events of a project, live; `state` tells whether the stream is connected. */
export function useProjectEvents(projectId: string | null): {
  events: StoredEvent[];
  state: StreamState;
  error: string | null;
} {
  const [events, setEvents] = useState<StoredEvent[]>([]);
  const [state, setState] = useState<StreamState>("connecting");
  const [error, setError] = useState<string | null>(null);
  const streamRef = useRef<ProjectStream | null>(null);
  useEffect(() => {
    if (!projectId) return;
    setEvents([]);
    const stream = new ProjectStream(projectId, {
      onEvents: (batch) => setEvents((prev) => prev.concat(batch)),
      onState: (s, err) => {
        setState(s);
        setError(err ?? null);
      },
    });
    streamRef.current = stream;
    return () => stream.close();
  }, [projectId]);
  return { events, state, error };
}
