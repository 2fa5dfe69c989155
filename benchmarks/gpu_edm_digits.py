"""GPU check of the EDM backend: train on `digits` for a few minutes, SIMS-sample, FID, images/s.

    python -m benchmarks gpu_edm_digits                 # CUDA: medium U-Net, ~3 min of training
    python -m benchmarks gpu_edm_digits --tiny          # CPU smoke run (tiny U-Net, seconds)

Steps: (1) a short probe measures training images/s and sizes the budget to --minutes;
(2) one training call of that budget (bf16 autocast on CUDA); (3) n_eval samples from the base
model (Heun, --steps); (4) the SIMS auxiliary model: the base fine-tuned for --aux-kimg on
--n-aux of its own samples; (5) n_eval SIMS samples with guidance weight --omega; (6) FID of base
and SIMS samples against all 1797 digits (classifier features; Inception too if madlab[fid] is
installed and --inception is given). Prints images/s for training, plain and guided sampling.
"""
from __future__ import annotations

import json
import time

import torch

from benchmarks.harness import sync
from loops.rng import SeedStreams
from madlab.edm.backend import EDMBackend, EDMConfig
from madlab.edm.data import ImageTarget, load_images
from madlab.edm.evaluate import FidMetric
from madlab.edm.features import make_features


SHARED = dict(device="cuda")
TINY = dict(device="cpu", net="tiny", minutes=0.05, batch=32, ema_kimg=0.5, steps=4, n_eval=200,
            n_aux=64, aux_kimg=0.2, sample_batch=200)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def arguments(p) -> None:
    p.add_argument("--net", default="medium", help="U-Net size (tiny | small | medium | ddpmpp-cifar10)")
    p.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema-kimg", type=float, default=50.0)
    p.add_argument("--steps", type=int, default=18, help="Heun steps")
    p.add_argument("--n-eval", type=int, default=5000, help="samples per FID")
    p.add_argument("--n-aux", type=int, default=1797, help="SIMS: self-samples for the auxiliary model")
    p.add_argument("--aux-kimg", type=float, default=200.0, help="SIMS: auxiliary fine-tuning budget B")
    p.add_argument("--omega", type=float, default=0.8)
    p.add_argument("--sample-batch", type=int, default=2500)
    p.add_argument("--inception", action="store_true", help="also Inception FID (needs madlab[fid])")
    p.add_argument("--json", default=None, help="also write the figures to this file")


def run(a) -> None:
    if a.tiny:
        torch.set_num_threads(1)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")

    data = load_images("digits")
    target = ImageTarget(data)
    streams = SeedStreams([0])
    real = target.sample(len(data.images), streams.keys("real"))          # all 1797 digits, [1, M, 1, 8, 8]
    config = EDMConfig(net=a.net, batch_size=a.batch, lr=a.lr, ema_kimg=a.ema_kimg, budget="kimg",
                       num_steps=a.steps, sample_batch=a.sample_batch, lr_rampup_kimg=min(10.0, a.aux_kimg / 4),
                       device=a.device)
    backend = EDMBackend(config, target.event_shape)
    model = backend.init(streams.keys("init"))
    n_params = sum(p.numel() for p in model.nets[0].parameters())
    print(f"net {a.net}: {n_params / 1e6:.2f} M parameters, batch {a.batch}, bf16 autocast: {device.type == 'cuda'}")

    probe_kimg = a.batch * 20 / 1000
    backend.train(model, real, probe_kimg, streams.keys("train", 0, 1))   # warm-up (cudnn autotune)
    _, probe_s = timed(lambda: backend.train(model, real, probe_kimg, streams.keys("train", 0, 2)), device)
    rate = probe_kimg * 1000 / probe_s
    budget_kimg = max(probe_kimg, rate * a.minutes * 60 / 1000)
    print(f"probe: {rate:,.0f} train images/s -> budget {budget_kimg:,.1f} kimg for {a.minutes:g} min")

    model, train_s = timed(lambda: backend.train(model, real, budget_kimg, streams.keys("train")), device)
    train_rate = budget_kimg * 1000 / train_s
    print(f"train: {budget_kimg:,.1f} kimg in {train_s:.1f} s = {train_rate:,.0f} images/s")

    base, base_s = timed(lambda: backend.sample(model, a.n_eval, streams.keys("eval")), device)
    nfe = 2 * a.steps - 1
    print(f"sample (base, {nfe} NFE): {a.n_eval / base_s:,.0f} images/s")

    synthetic, _ = timed(lambda: backend.sample(model, a.n_aux, streams.keys("aux-sample")), device)
    aux, aux_s = timed(lambda: backend.train(model, synthetic, a.aux_kimg, streams.keys("finetune")), device)
    print(f"SIMS auxiliary: fine-tuned {a.aux_kimg:g} kimg on {a.n_aux} self-samples in {aux_s:.1f} s")
    sims, sims_s = timed(lambda: backend.sample(model, a.n_eval, streams.keys("eval"), guide=aux,
                                                omega=a.omega), device)
    print(f"sample (SIMS w={a.omega:g}, {2 * nfe} NFE): {a.n_eval / sims_s:,.0f} images/s")

    results = {"device": str(device), "net": a.net, "params_M": n_params / 1e6, "batch": a.batch,
               "train_kimg": budget_kimg, "train_images_per_s": train_rate,
               "sample_images_per_s": a.n_eval / base_s, "sims_sample_images_per_s": a.n_eval / sims_s,
               "n_eval": a.n_eval, "omega": a.omega, "aux_kimg": a.aux_kimg}
    kinds = ["classifier"] + (["inception"] if a.inception else [])
    for kind in kinds:
        metric = FidMetric(data, make_features(kind, data, device=a.device))
        fid_real = float(metric(real[:, :a.n_eval])[0]) if a.n_eval <= real.shape[1] else float("nan")
        fid_base, fid_sims = float(metric(base)[0]), float(metric(sims)[0])
        results |= {f"fid_{kind}_base": fid_base, f"fid_{kind}_sims": fid_sims, f"fid_{kind}_real": fid_real}
        print(f"FID ({kind} features, {a.n_eval} samples vs all digits): base {fid_base:.3f}, "
              f"SIMS {fid_sims:.3f}, real digits themselves {fid_real:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps(results))
