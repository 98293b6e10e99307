#!/usr/bin/env bash
# A fixed-budget training run on the lent GPU machine, started through the device tool:
#
#   run(command="bash tools/device_train.sh MODEL MINUTES [train-latent options]", carry=[".device"], timeout_s=600)
#
# after `tools/device_pack.py --for latent` (MODEL prior, latent-diffusion or perco) or
# `tools/device_pack.py --for dirac` (MODEL dirac: `enhance train --codec jpeg`) here. Pass the
# committed weights as --init-from (add --prior for the codecs as on the CPU); it brings the EMA
# bundle back through $OUT (weights and configs; the optimiser state stays there, so resume here
# with --init-from OUT_BUNDLE). bf16 autocast is the Trainer's default on every device.
set -euo pipefail
model=$1 minutes=$2
shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/wheels/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ "$model" = dirac ]; then
  command=(train --codec jpeg)
else
  command=(train-latent "$model" --cache /tmp/latents)
fi
python3 -c "from enhance.cli import main; main()" "${command[@]}" --data .device/data/train --val .device/data/val \
  --out /tmp/run --minutes "$minutes" --device "${DEVICE:-cuda}" "$@" 2>&1 | tee "$OUT/train.log"
cp /tmp/run/train.jsonl "$OUT/"
# $OUT brings back files at most two folders down: the bundle's own layout (e.g. unet/config.json) fits.
cp -r /tmp/run/bundle "$OUT/bundle"
find "$OUT" -type f | sort
