"""``python -m shared.secrets``: operator commands for aidp's Vault policies and tokens.

- ``policies [--out DIR] [--transit-key K] ...``: print (or write as ``DIR/<name>.hcl``) the
  per-service policies, e.g. for a distributed deployment (``deploy/vault/``).
- ``root-token [--data-dir D]``: the embedded vault of data dir ``D`` makes a new root
  token from its unseal key and prints it. Nothing uses it: revoke it when done
  (``BAO_ADDR=... BAO_TOKEN=... bao token revoke -self``).
- ``reissue-tokens [--data-dir D]``: issue new scoped service tokens for the embedded vault
  (older ones are revoked: restart a running ``aidp up`` afterwards).

``D`` defaults to ``AIDP_DATA_DIR``, else ``~/.aidp``; the vault lives in ``D/openbao``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared.secrets.policies import PolicyParams, render_all


def _data_dir(value: str | None) -> Path:
    raw = value or os.environ.get("AIDP_DATA_DIR") or str(Path.home() / ".aidp")
    return Path(raw).expanduser() / "openbao"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.secrets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pol = sub.add_parser("policies", help="print or write the per-service Vault policies")
    pol.add_argument("--out", type=Path, help="write DIR/<policy>.hcl instead of printing")
    defaults = PolicyParams()
    for name, value in defaults.as_dict().items():
        pol.add_argument(f"--{name.replace('_', '-')}", default=value, help=f"[{value}]")
    for name, text in (
        ("root-token", "print a new root token of the embedded vault (revoke it after use)"),
        ("reissue-tokens", "issue new scoped service tokens for the embedded vault"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--data-dir", help="aidp data dir [AIDP_DATA_DIR or ~/.aidp]")
    args = parser.parse_args(argv)

    if args.command == "policies":
        params = PolicyParams(**{k: getattr(args, k) for k in defaults.as_dict()})
        rendered = render_all(params)
        if args.out is None:
            for name, hcl in rendered.items():
                print(f"# ---- {name}\n{hcl}")
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        for name, hcl in rendered.items():
            (args.out / f"{name}.hcl").write_text(hcl)
        print(f"wrote {len(rendered)} policies to {args.out}")
        return 0

    from shared.secrets.local import LocalOpenBao

    bao = LocalOpenBao(_data_dir(args.data_dir))
    if not bao.init_file.exists():
        print(f"no embedded vault in {bao.data_dir} (run `aidp up` first)", file=sys.stderr)
        return 2
    if args.command == "root-token":
        token = bao.generate_root()
        print(f"BAO_ADDR={bao.addr}")
        print(f"BAO_TOKEN={token}")
        print("# a root token: revoke it when done:  bao token revoke -self", file=sys.stderr)
        return 0
    vault = bao.reissue_tokens()
    print(f"issued new tokens for {', '.join(vault.tokens)} at {vault.addr}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
