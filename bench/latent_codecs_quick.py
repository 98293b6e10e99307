"""Quick real-encode check of the shipped latent-diffusion and PerCo models on 3 val images.

    python bench/latent_codecs_quick.py   # writes bench/results/latent_codecs_quick.json

bpp of the payload, PSNR of the naive (steps 0) and default decodes, decode seconds (1 torch thread).
The full benchmark is bench/latent_codecs.py; this one fits a few minutes of CPU.
"""
import glob, time, json, numpy as np, torch
from PIL import Image
from enhance_latent_diffusion import LatentDiffusionCodec
from enhance_perco import PercoCodec
torch.set_num_threads(1)
def psnr(a,b): return float(10*np.log10(255**2/np.mean((a.astype(float)-b)**2)))
files = ["/work/shared/data/val/mcmaster/1.png", "/work/shared/data/val/live1-subset/building2.png", "/work/shared/data/val/mcmaster/10.png"]
imgs = [np.array(Image.open(f).convert("RGB")) for f in files]
out = {"images": files, "latent-diffusion": {}, "perco": {}}
ldm = LatentDiffusionCodec(device="cpu")
for level in (1, 4, 8):
    rows = []
    for img in imgs:
        data = ldm.encode(img, level); bpp = len(data) * 8 / img.shape[0] / img.shape[1]
        t = time.time(); r4 = ldm.decode(data, steps=4); t4 = time.time() - t
        r0 = ldm.decode(data, steps=0)
        rows.append([bpp, psnr(img, r0), psnr(img, r4), t4])
    out["latent-diffusion"][level] = dict(zip(["bpp", "psnr_steps0", "psnr_steps4", "decode_s_steps4"], np.mean(rows, 0).round(4).tolist()))
    print("ldm", level, out["latent-diffusion"][level], flush=True)
perco = PercoCodec(device="cpu")
for level in (1, 5, 7):
    rows = []
    for img in imgs[:2]:
        data = perco.encode(img, level); bpp = len(data) * 8 / img.shape[0] / img.shape[1]
        t = time.time(); r = perco.decode(data); td = time.time() - t
        rows.append([len(data), bpp, psnr(img, r), td])
    out["perco"][level] = dict(zip(["payload_bytes", "bpp", "psnr", "decode_s"], np.mean(rows, 0).round(4).tolist()))
    print("perco", level, out["perco"][level], flush=True)
json.dump(out, open("/work/main/bench/results/latent_codecs_quick.json", "w"), indent=2)
