"""Converts upstream TAESD-family `.pth` state dicts to the safetensors bundle `enhance` ships.

Run once by a maintainer (the `.pth` files are torch pickles; they are read with
`weights_only=True`, which refuses anything but tensors): 

    python tools/convert_taesd.py ../shared/weights/taef2 weights/taef2

Writes encoder.safetensors, decoder.safetensors (fp16, as upstream) and config.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def convert(source: Path, target: Path, prefix: str = "taef2", latent_channels: int = 32) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for half in ("encoder", "decoder"):
        state = torch.load(source / f"{prefix}_{half}.pth", map_location="cpu", weights_only=True)
        save_file({key: value.contiguous() for key, value in state.items()}, str(target / f"{half}.safetensors"))
    config = {"_class_name": "TAEF2", "latent_channels": latent_channels, "factor": 8, "source": f"madebyollin/taesd {prefix}_*.pth"}
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
