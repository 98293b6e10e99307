"""How much of an image PerCo's local codes carry, and how much of that its decoder uses.

    python bench/perco_codes.py [--bundle DIR] [--train ../shared/data/train --every 10] \
        [--val ../shared/data/val] [--json bench/results/perco_codes.json]

At every rate level, the target is each code cell's mean normalised latent (the cell is the
level's grid square: 8x8 latent positions at 1/64 of the image down to one position at 1/8).
Errors are mean squared, in normalised latent units, over the cells of the val images:

- `variance`: predicting every cell by the val mean (the scale of the others);
- `kmeans`: the best any code of V entries per cell could do by itself, approximately: V
  centroids fitted (Lloyd, 25 rounds) to the training images' cell means, each val cell given
  its nearest centroid. Not an exact bound (the codec's encoder sees beyond its cell), but the
  yardstick for a grid of V-entry codes;
- `index_map`: what the codec's own indices say, read by the best possible decoder of a cell
  from its index alone: the mean target per index over the training images (an index never
  seen there predicts the training mean);
- `linear_probe`: the encoder's training-only linear probe from the code vector;
- `decoder_from_noise`: the decoder's clean estimate in one call from pure noise (t = 999),
  conditioned on the codes and the global code, averaged over each cell: what the decoder
  reads from the codes, before any sampling.

Beside the errors, `unigram_bits`: the mean bits per val index under each index's frequency over the
training images (add-half smoothed), against the log2(V) bits of the codec's uniform coding: what
entropy coding the indices with a learned (order-0) prior would save.

If the decoder is near `index_map`, it reads what the codes carry; if `index_map` is far above
`kmeans`, the codes carry less than codes of their size could; if both are near, what is left
(down from `kmeans`) is not in codes of this size at all: it is the decoder's to generate.
Training images are every `--every`-th of each folder, at most 640 px (one window, as the latent
cache takes them); val images whole (at most 1024 px a side, one window).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latent_ceiling import DEFAULT_DATASET, command_line, machine  # noqa: E402

DEFAULT_TRAIN = Path("../shared/data/train")

KMEANS_ROUNDS = 25


def latents(folders: list[Path], every: int, max_side: int, model, autoencoder) -> list[torch.Tensor]:
    from enhance.latent import encode_image
    from enhance.train.data import every_nth_per_folder, find_images, load_rgb
    from enhance.train.latents import cache_window

    found = []
    for folder in folders:
        for path in every_nth_per_folder(find_images([folder]), every):
            image = cache_window(load_rgb(path), max_side, path.name)
            found.append(model.decoder.normalise(encode_image(autoencoder, image)).float())
    return found


def cell_means(latent: torch.Tensor, factor: int) -> torch.Tensor:
    """(cells x channels) of one 1 x C x h x w latent; edge cells average what they hold."""
    from enhance.latent.padding import pad_to_multiple

    return F.avg_pool2d(pad_to_multiple(latent, factor), factor).permute(0, 2, 3, 1).reshape(-1, latent.shape[1])


def kmeans(points: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(points.shape[0], generator=generator)[:count]].clone()
    for _ in range(KMEANS_ROUNDS):
        nearest = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, points)
        counts = torch.bincount(nearest, minlength=count)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    return centroids


def codes(model, latent: torch.Tensor, level: int):
    local, indices, global_codes, _, _ = model.encoder(latent, level)
    return local, indices.reshape(-1), global_codes


def level_errors(model, level: int, fit: list[torch.Tensor], val: list[torch.Tensor]) -> dict:
    factor, size = model.config.levels[level]
    fit_targets = torch.cat([cell_means(z, factor) for z in fit])
    fit_indices = torch.cat([codes(model, z, level)[1] for z in fit])
    table = torch.zeros(size, fit_targets.shape[1]).index_add_(0, fit_indices, fit_targets)
    seen = torch.bincount(fit_indices, minlength=size)
    table = torch.where(seen[:, None] > 0, table / seen.clamp(min=1)[:, None], fit_targets.mean(dim=0))
    enough = fit_targets.shape[0] >= 4 * size
    centroids = kmeans(fit_targets, size) if enough else None
    sums = dict.fromkeys(["variance", "kmeans", "index_map", "linear_probe", "decoder_from_noise"], 0.0)
    frequency = (seen.double() + 0.5) / (seen.sum() + 0.5 * size)
    cells, bits = 0, 0.0
    val_mean = torch.cat([cell_means(z, factor) for z in val]).mean(dim=0)
    for z in val:
        target = cell_means(z, factor)
        local, indices, global_codes = codes(model, z, level)
        probe = model.encoder.probe(local).permute(0, 2, 3, 1).reshape(-1, target.shape[1])
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        t = torch.full((1,), model.decoder.num_timesteps - 1)
        output = model.output(noise, t, model.local_features(local, level, z.shape[-2:]), model.condition_vector(level, global_codes, 1))
        estimate = cell_means(model.decoder.predict_clean(noise, t, output=output).float(), factor)
        guesses = {"variance": val_mean.expand_as(target), "index_map": table[indices], "linear_probe": probe, "decoder_from_noise": estimate}
        if centroids is not None:
            guesses["kmeans"] = centroids[torch.cdist(target, centroids).argmin(dim=1)]
        for name, guess in guesses.items():
            sums[name] += float((guess - target).pow(2).mean(dim=1).sum())
        cells += target.shape[0]
        bits -= float(frequency[indices].log2().sum())
    row = {name: round(total / cells, 4) for name, total in sums.items()}
    row["unigram_bits"] = round(bits / cells, 3)
    if centroids is None:
        row["kmeans"] = None  # too few training cells to fit V centroids
    return {"level": level + 1, "cell_positions": factor, "entries": size, "fit_cells": fit_targets.shape[0], "val_cells": cells, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="a PerCo bundle folder (default: the shipped one)")
    parser.add_argument("--train", type=Path, action="append", default=None)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--val", type=Path, action="append", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from enhance_perco.codec import PercoCodec

    config, model, autoencoder, _ = PercoCodec(bundle=args.bundle, device="cpu")._parts()
    with torch.no_grad():
        fit = latents(args.train or [DEFAULT_TRAIN], args.every, 640, model, autoencoder)
        val = latents(args.val or [DEFAULT_DATASET], 1, 1024, model, autoencoder)
        rows = [level_errors(model, level, fit, val) for level in range(len(config.levels))]
    print("| level | cell (latent positions) | V | variance | k-means | index map | linear probe | decoder from noise | bits/index: uniform, unigram |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        errors = [row[k] for k in ("variance", "kmeans", "index_map", "linear_probe", "decoder_from_noise")]
        cells = [row["level"], row["cell_positions"], row["entries"], *errors, f"{math.log2(row['entries']):g}, {row['unigram_bits']}"]
        print("| " + " | ".join("n/a" if c is None else str(c) for c in cells) + " |")
    if args.json:
        document = {"command": command_line(), "bundle": str(args.bundle or "shipped"), "fit_images": len(fit), "val_images": len(val), "machine": machine(), "levels": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
