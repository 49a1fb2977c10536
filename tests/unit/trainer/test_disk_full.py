"""A checkpoint written while the store's disk is full (issue 19 item 3): the run fails at
once (not retried: a retry meets the same disk) with a reason naming the disk, and no blob of
the half-stored checkpoint is left in the store. The store lives on a small tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.small_disk import small_disk
from tests.unit.trainer.conftest import running_trainer
from tests.unit.trainer.test_training_failures import custom_spec

pytestmark = pytest.mark.slow

CHECKPOINT_SCRIPT = """
    import os
    import aidp_progress as aidp

    aidp.report(1, total_steps=3, loss=0.5)
    ckpt = aidp.checkpoint_dir(1)
    (ckpt / "small.bin").write_bytes(os.urandom(64 * 1024))
    for i in range(4):  # 4 x 3 MiB: more than the store's disk holds
        (ckpt / f"part{i}.bin").write_bytes(os.urandom(3 << 20))
    aidp.checkpoint_saved(1, ckpt)
    import time
    time.sleep(60)  # the trainer stops the run before this ends
"""


def _blobs(store_dir: Path) -> set[Path]:
    return {p for p in (store_dir / "blobs").rglob("*") if p.is_file()}


async def test_checkpoint_on_a_full_disk_fails_the_run_naming_the_disk(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> None:
    with small_disk(tmp_path / "disk", megabytes=8) as disk:
        store_dir = disk / "store"
        async with running_trainer(
            tmp_path, tiny_files, store_dir=store_dir, store_min_free_mb=0.25
        ) as trainer:
            before = _blobs(store_dir)  # the staged model and dataset
            run_id = await trainer.start_run(spec=custom_spec(CHECKPOINT_SCRIPT))
            failed = await trainer.events.first("TrainingFailed", run_id, timeout=60)
            reason = failed.payload["reason"]
            assert reason.startswith("checkpoint of step 1 not stored: ")
            assert f"The disk holding {store_dir} is full" in reason
            assert failed.payload["retryable"] is False
            assert trainer.events.of("TrainingStarted", run_id)  # one attempt, no retry
            assert len(trainer.events.of("TrainingStarted", run_id)) == 1
            assert _blobs(store_dir) == before
            assert not list((store_dir / "tmp").iterdir())
            assert any("not stored" in str(line) for line in trainer.events.logs(run_id))
