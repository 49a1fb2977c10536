"""The pre-flight check's bounds: rows read, issues reported, bytes and seconds allowed."""

from __future__ import annotations

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_ISSUES",
    "MAX_MODEL_FILE_BYTES",
    "MEMORY",
    "ROWS",
    "TIMEOUT",
]

#: Rows read and rendered per check.
ROWS = 2000
#: Issues carried in an event (the counts cover all of them).
MAX_ISSUES = 50
#: Largest dataset file (not JSONL) read for the check; bigger ones are not checked.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Largest tokenizer/config file handed to the check.
MAX_MODEL_FILE_BYTES = 64 * 1024 * 1024
#: Seconds and bytes of address space the check's process may use.
TIMEOUT = 120
MEMORY = 4 * 1024 * 1024 * 1024
