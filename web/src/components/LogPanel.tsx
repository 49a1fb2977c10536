// The training log: follows new lines unless the reader scrolled up; a filter box narrows
// it (case-insensitive), and "Download" saves every stored line of the run as text.
import { useEffect, useMemo, useRef, useState } from "react";
import { api } from "../api";
import { filterLines } from "../logFilter";
import type { LogLine } from "../runState";

interface LogPage {
  lines: { seq: number; node: string; stream: string; text: string }[];
  next_after: number;
}

/** Every stored log line of a run, paged from the API (the panel keeps only the last ones). */
export async function allLogText(runId: string): Promise<string> {
  const out: string[] = [];
  let after = 0;
  for (let page = 0; page < 1000; page++) {
    const body = await api.get<LogPage>(`/api/runs/${runId}/logs?after=${after}&limit=1000`);
    for (const l of body.lines) out.push(l.node ? `${l.node} ${l.text}` : l.text);
    if (body.lines.length === 0 || body.next_after <= after) break;
    after = body.next_after;
  }
  return out.join("\n") + (out.length ? "\n" : "");
}

export function LogPanel({ lines, runId }: { lines: LogLine[]; runId?: string | null }) {
  const ref = useRef<HTMLPreElement>(null);
  const [follow, setFollow] = useState(true);
  const [query, setQuery] = useState("");
  const [busy, setBusy] = useState(false);
  const shown = useMemo(() => filterLines(lines, query), [lines, query]);
  useEffect(() => {
    const el = ref.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [shown.length, follow]);
  const onScroll = () => {
    const el = ref.current;
    if (el) setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
  };

  async function download() {
    setBusy(true);
    try {
      const text = runId ? await allLogText(runId) : lines.map((l) => `${l.node} ${l.text}`).join("\n");
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = `run-${runId ?? "log"}.log`;
      a.click();
      window.setTimeout(() => URL.revokeObjectURL(url), 1000);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="logs">
      <div className="logs-tools">
        <input
          type="search"
          placeholder="Filter lines…"
          aria-label="Filter log lines"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          data-testid="log-filter"
        />
        {query && (
          <span className="muted small" role="status">
            {shown.length} of {lines.length} lines
          </span>
        )}
        <button type="button" className="btn btn-small btn-ghost" onClick={() => void download()} disabled={busy || lines.length === 0}>
          Download
        </button>
      </div>
      <pre ref={ref} onScroll={onScroll} tabIndex={0} aria-label="Training log" aria-live="off" data-testid="log-panel">
        {lines.length === 0
          ? "No log lines yet."
          : shown.length === 0
            ? "No line matches the filter."
            : shown.map((l) => (
                <div key={`${l.seq}-${l.text}`} className={l.stream === "stderr" ? "log-err" : undefined}>
                  {l.node && <span className="log-node">{l.node} </span>}
                  {l.text}
                </div>
              ))}
      </pre>
      {!follow && (
        <button type="button" className="btn btn-small logs-follow" onClick={() => setFollow(true)}>
          Follow new lines
        </button>
      )}
    </div>
  );
}
