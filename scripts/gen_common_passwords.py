"""Regenerate services/auth/data/common-passwords.txt from zxcvbn's bundled frequency list."""

from __future__ import annotations

from pathlib import Path

from zxcvbn import frequency_lists  # type: ignore[import-untyped]

OUT = Path(__file__).resolve().parents[1] / "services" / "auth" / "data" / "common-passwords.txt"

HEADER = """# The 30,000 most common passwords, most common first, lowercased.
# Generated from the frequency list bundled with zxcvbn 4.5.0 (PyPI, MIT licence);
# regenerate with scripts/gen_common_passwords.py.
"""


def main() -> None:
    words = frequency_lists.FREQUENCY_LISTS["passwords"]
    OUT.write_text(HEADER + "".join(f"{w.lower()}\n" for w in words), encoding="utf-8")


if __name__ == "__main__":
    main()
