"""``python -m services``: all five services in one process (embedded mode)."""

from __future__ import annotations

import os
from pathlib import Path

from services.embedded import serve

if __name__ == "__main__":
    serve(
        host=os.environ.get("AIDP_HOST", "127.0.0.1"),
        port=int(os.environ.get("AIDP_PORT", "8000")),
        data_dir=Path(os.environ.get("AIDP_DATA_DIR", str(Path.home() / ".aidp"))),
    )
