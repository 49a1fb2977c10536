"""The Terraform path of the idc driver: ``deploy/terraform/idc`` applied once per run.

Chosen only when ``AIDP_IDC_USE_TERRAFORM=true`` and ``terraform`` or ``tofu`` is on PATH;
otherwise the driver calls the REST API directly. Each run gets its own working directory
(a copy of the module plus its state) under the run's private state dir; credentials reach
Terraform through the provider's ``ITAC_*`` environment variables, never files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from shared.errors import ProviderError

__all__ = ["TerraformRun", "terraform_binary"]


def terraform_binary(path: str | None = None) -> str | None:
    """``terraform`` (else ``tofu``) found on ``path`` (default PATH), or None."""
    for name in ("terraform", "tofu"):
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


class TerraformRun:
    """Apply/destroy the IDC module for one run and read its outputs."""

    def __init__(self, *, binary: str, module: Path, workdir: Path, env: dict[str, str]) -> None:
        self.binary = binary
        self.module = module
        self.workdir = workdir
        self.env = {**os.environ, **env, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}

    def _prepare(self) -> None:
        if not (self.workdir / "main.tf").exists():
            self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            for tf in self.module.glob("*.tf"):
                shutil.copy(tf, self.workdir / tf.name)

    async def _tf(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            cwd=self.workdir,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError(
                f"terraform {args[0]} failed: {err.decode(errors='replace').strip()[-3000:]}",
                code="terraform_failed",
            )
        return out.decode()

    async def apply(self, variables: dict[str, Any]) -> dict[str, Any]:
        """``init`` + ``apply`` (idempotent: the state remembers what exists); the outputs."""
        self._prepare()
        (self.workdir / "aidp.auto.tfvars.json").write_text(json.dumps(variables, indent=1))
        await self._tf("init", "-no-color")
        await self._tf("apply", "-auto-approve", "-no-color")
        outputs = json.loads(await self._tf("output", "-json"))
        return {name: value.get("value") for name, value in outputs.items()}

    async def destroy(self) -> None:
        if (self.workdir / "main.tf").exists():
            await self._tf("destroy", "-auto-approve", "-no-color")
