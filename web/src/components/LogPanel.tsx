// The training log: follows new lines unless the reader scrolled up.
import { useEffect, useRef, useState } from "react";
import type { LogLine } from "../runState";

export function LogPanel({ lines }: { lines: LogLine[] }) {
  const ref = useRef<HTMLPreElement>(null);
  const [follow, setFollow] = useState(true);
  useEffect(() => {
    const el = ref.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [lines.length, follow]);
  const onScroll = () => {
    const el = ref.current;
    if (el) setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
  };
  return (
    <div className="logs">
      <pre ref={ref} onScroll={onScroll} tabIndex={0} aria-label="Training log" aria-live="off" data-testid="log-panel">
        {lines.length === 0
          ? "No log lines yet."
          : lines.map((l) => (
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
