"""A few minutes' real-bitstream check of a latent-diffusion bundle: bpp and PSNR-RGB per level and step count.

    python bench/latent_codec_psnr.py BUNDLE LEVELS IMAGES [STEPS] [DATASET]
    python bench/latent_codec_psnr.py plugins/latent-diffusion/src/enhance_latent_diffusion/weights/latent-diffusion 1,3,5,8 4 0,4

IMAGES val images are taken evenly (every 33 // IMAGES-th PNG in name order); one torch thread. The
issue's full table (SWD, SSIMULACRA2, base codecs at matched bpp) is bench/latent_codecs.py.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from enhance.metrics import FULL_REFERENCE
from enhance_latent_diffusion import LatentDiffusionCodec


def main(bundle: str, levels: str, count: str, steps: str = "0", dataset: str = "../shared/data/val") -> None:
    torch.set_num_threads(1)
    codec = LatentDiffusionCodec(bundle=bundle, device="cpu")
    files = sorted(Path(dataset).rglob("*.png"))
    files = files[:: max(1, len(files) // int(count))][: int(count)]
    step_counts = [int(s) for s in steps.split(",")]
    for level in (int(v) for v in levels.split(",")):
        bpp, scores = [], {s: [] for s in step_counts}
        for path in files:
            image = np.asarray(Image.open(path).convert("RGB"))
            data = codec.encode(image, level)
            bpp.append(len(data) * 8 / image.shape[0] / image.shape[1])
            for s in step_counts:
                scores[s].append(FULL_REFERENCE["psnr-rgb"](image, codec.decode(data, steps=s)))
        print(level, "bpp %.4f" % np.mean(bpp), " ".join("steps%d %.2f dB" % (s, np.mean(v)) for s, v in scores.items()), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
