"""The method is not only for rain: compress a DnCNN-style denoiser (Zhang et al. 2017) without noisy data.

1. train a small DnCNN briefly on the shipped *train*-role clean images with Gaussian noise (sigma 25);
2. ``dreamlib.compress`` it to 60 % of its MACs (adaptive pruning on dreams of the *dream*-role clean
   images, then dream-distillation): no noisy image is used;
3. measure on held-out noisy images (the *test*-role images plus seeded noise, basicsr PSNR):
   teacher / pruned / distilled, and the fraction of the PSNR lost by pruning that distillation
   recovered (the issue asks for at least half).

    .venv/bin/python scripts/dncnn_recovery.py [--train-steps 400] [--distill-steps 400] [--out runs/dncnn]
        [--results results/own_network/dncnn_recovery.json]   # only when you ask: the committed numbers
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv=None):
    import dreamlib
    from dreamlib.compression import gaussian_noise
    from dreamlib.data.samples import load_samples
    from own_networks import DnCNN, train_denoiser

    p = argparse.ArgumentParser()
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--distill-steps", type=int, default=400)
    p.add_argument("--lr-student", type=float, default=1e-3)
    p.add_argument("--target", type=float, default=0.6)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--results", type=Path, default=None, help="also write the numbers to this JSON (atomically)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    net = train_denoiser(DnCNN(depth=7, width=32), load_samples("train"), sigma=a.sigma, steps=a.train_steps,
                         seed=a.seed)
    t_train = time.perf_counter() - t0
    r = dreamlib.compress(net, load_samples("dream"), target=a.target, method="adaptive",
                          degrade=gaussian_noise(a.sigma, seed=1), eval_images=load_samples("test"),
                          distill_steps=a.distill_steps, reinit_every=100, lr_student=a.lr_student,
                          dream_steps=150, batch_size=8, crop=64, input_size=(1, 3, 256, 256),
                          seed=a.seed, out_dir=a.out, progress=False)
    ev = r.report["eval"]
    out = {"sigma": a.sigma, "train_steps": a.train_steps, "distill_steps": a.distill_steps,
           "lr_student": a.lr_student, "target": a.target, "train_seconds": round(t_train, 1),
           "compress_seconds": {k: round(v, 1) for k, v in r.report["seconds"].items()},
           "macs": r.report["macs"], "psnr": ev["psnr"], "ssim": ev["ssim"], "n": ev["n"],
           "lost_db": ev["lost_db"], "regained_db": ev["regained_db"], "recovered": ev["recovered"]}
    if a.results is not None:
        from dreamlib.io import atomic_write_json
        from dreamlib.provenance import provenance

        out["seed"] = a.seed
        out["provenance"] = provenance(seed=a.seed, argv=sys.argv)
        a.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.results, out)
    print(json.dumps(out, indent=2, default=str))
    print(r.summary())
    return 0 if ev["recovered"] is not None and ev["recovered"] >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
