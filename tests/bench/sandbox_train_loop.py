"""A small CPU training loop, run as a script by ``test_sandbox_overhead.py``.

A 2-layer MLP on random data (fixed seed, fixed steps). After ``WARMUP`` steps it times
``STEPS`` more and prints one JSON line: samples/s and CPU seconds per wall second of the
timed loop only (interpreter start, imports and warm-up are excluded).

Usage: ``python sandbox_train_loop.py STEPS THREADS``
"""

from __future__ import annotations

import json
import sys
import time

import torch

WARMUP = 20
BATCH = 128
FEATURES, HIDDEN, CLASSES = 512, 1024, 10


def main() -> None:
    steps, threads = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(16, BATCH, FEATURES)
    labels = torch.randint(0, CLASSES, (16, BATCH))
    loss = torch.zeros(())

    def step(i: int) -> None:
        nonlocal loss
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(inputs[i % 16]), labels[i % 16])
        loss.backward()
        optimiser.step()

    for i in range(WARMUP):
        step(i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "samples_per_s": steps * BATCH / wall,
                "cpu_per_s": cpu / wall,
                "seconds": wall,
                "loss": loss.item(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
