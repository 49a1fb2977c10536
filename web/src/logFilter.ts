// Narrowing a run's log lines by a query (the log panel's filter box).
import type { LogLine } from "./runState";

/** Lines whose text or node contains `query` (case-insensitive); all for a blank query. */
export function filterLines(lines: LogLine[], query: string): LogLine[] {
  const q = query.trim().toLowerCase();
  if (!q) return lines;
  return lines.filter((l) => l.text.toLowerCase().includes(q) || l.node.toLowerCase().includes(q));
}
