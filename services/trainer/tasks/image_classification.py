"""Built-in task ``image-classification``: an image model + classification head.

Data: folder per class (``<class>/<image>``) or an imagefolder-style dataset with a
``metadata.csv`` (``file_name``, ``label``). Images are read with PIL when the environment
has it, else PNG (8-bit, non-interlaced), PPM/PGM and ``.npy`` are decoded here, so only
torch + transformers are needed. Pixels are resized to the model's ``image_size`` and
normalised with the model's ``preprocessor_config.json`` mean/std (0.5 otherwise).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aidp_progress as aidp  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    Distributed,
    TrainConfig,
    batched_eval,
    finish,
    macro_f1,
    read_table,
    run_training,
    split_rows,
)

IMAGES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".npy", ".bmp", ".webp")


def _png(data: bytes) -> torch.Tensor:
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or interlace or color not in (0, 2, 4, 6):
        raise SystemExit("PNG must be 8-bit, non-interlaced gray/RGB(A) without PIL")
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], (prev[x - channels] if x >= channels else 0)
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride : (y + 1) * stride], prev = line, line
    img = torch.frombuffer(bytes(out), dtype=torch.uint8).view(height, width, channels)
    return img[..., :3] if channels >= 3 else img[..., :1].expand(-1, -1, 3)


def load_image(path: Path) -> torch.Tensor:
    """An image as a float tensor (3, H, W) in [0, 1]."""
    try:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            arr = torch.from_numpy(np.asarray(im.convert("RGB")).copy())
    except ImportError:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            import numpy as np

            arr = torch.from_numpy(np.load(path, allow_pickle=False))
        elif suffix == ".png":
            arr = _png(path.read_bytes())
        elif suffix in (".ppm", ".pgm"):
            parts = path.read_bytes().split(maxsplit=4)
            width, height = int(parts[1]), int(parts[2])
            channels = 3 if parts[0] == b"P6" else 1
            arr = torch.frombuffer(
                bytearray(parts[4][: width * height * channels]), dtype=torch.uint8
            )
            arr = arr.view(height, width, channels).expand(-1, -1, 3)
        else:
            raise SystemExit(f"{path.suffix} images need Pillow in environment.packages") from None
    if arr.ndim == 2:
        arr = arr.unsqueeze(-1).expand(-1, -1, 3)
    return arr.permute(2, 0, 1).float() / (255.0 if arr.dtype == torch.uint8 else 1.0)


def list_examples(root: Path) -> list[tuple[Path, str]]:
    meta = next(iter(sorted(root.rglob("metadata.csv"))), None)
    if meta is not None:
        return [(meta.parent / r["file_name"], str(r["label"])) for r in read_table(meta)]
    return [
        (p, p.parent.name)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGES and p.parent != root
    ]


def preprocess(paths: list[Path], size: int, mean: list[float], std: list[float]) -> torch.Tensor:
    images = [
        torch.nn.functional.interpolate(
            load_image(p)[None], size=(size, size), mode="bilinear", align_corners=False
        )[0]
        for p in paths
    ]
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (torch.stack(images) - m) / s


def main() -> None:
    from transformers import AutoConfig, AutoModelForImageClassification

    cfg = TrainConfig.from_env()
    ctx = Distributed()
    examples = list_examples(aidp.data_dir())
    if not examples:
        raise SystemExit("no images found: use one folder per class or a metadata.csv")
    labels = {n: i for i, n in enumerate(sorted({label for _, label in examples}))}
    train_ex, eval_ex = split_rows(examples, cfg.eval_fraction, cfg.seed)
    config = AutoConfig.from_pretrained(
        aidp.model_dir(), trust_remote_code=False, local_files_only=True
    )
    size = int(getattr(config, "image_size", 224))
    pre_path = aidp.model_dir() / "preprocessor_config.json"
    pre: dict[str, Any] = json.loads(pre_path.read_text()) if pre_path.exists() else {}
    mean, std = pre.get("image_mean", [0.5] * 3), pre.get("image_std", [0.5] * 3)
    model = AutoModelForImageClassification.from_pretrained(
        aidp.model_dir(),
        num_labels=len(labels),
        id2label={i: n for n, i in labels.items()},
        label2id=labels,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )

    def tensors(items: list[tuple[Path, str]]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": preprocess([p for p, _ in items], size, mean, std),
            "labels": torch.tensor([labels[label] for _, label in items]),
        }

    train = tensors(train_ex)
    evals = tensors(eval_ex) if eval_ex else {}

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        data = evals or {k: v[:256] for k, v in train.items()}
        logits, loss = batched_eval(m, data, ctx.device)
        prefix = "eval" if evals else "train"
        predicted = logits.argmax(-1)
        acc = float((predicted == data["labels"]).float().mean())
        return {
            f"{prefix}_accuracy": acc,
            f"{prefix}_f1": macro_f1(predicted, data["labels"]),
            f"{prefix}_loss_final": loss,
        }

    metrics = run_training(
        model=model, data=train, cfg=cfg, ctx=ctx, evaluate=evaluate, eval_split=bool(evals)
    )
    extra = []
    if pre_path.exists():
        from transformers import AutoImageProcessor

        try:
            extra.append(
                AutoImageProcessor.from_pretrained(aidp.model_dir(), local_files_only=True)
            )
        except Exception:  # the processor class may need extra packages; weights still save
            pass
    finish(model, ctx, metrics, *extra)


if __name__ == "__main__":
    main()
