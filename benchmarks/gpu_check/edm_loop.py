"""Part c of the GPU check: an EDM digits loop through run_config (2 generations, SIMS, FID)."""
from __future__ import annotations

import math
import os
import tempfile
import time

from benchmarks.gpu_check.report import Report
from benchmarks.gpu_check.timing import (Ledger, gpu_memory, patched, phase_table, reset_gpu_memory,
                                         save_frame, synced_phase_clock)
from benchmarks.harness import sync


def run(args, rep: Report) -> None:
    """The EDM backend on digits through run_config: 2 generations, SIMS, FID (classifier)."""
    import torch
    from loops.rng import SeedStreams
    from madlab.edm.backend import EDMBackend
    from madlab.edm.config import EDMConfig
    from madlab.edm.data import ImageTarget, load_images_cached
    dev = args.device
    os.environ.setdefault("MADLAB_CACHE", tempfile.mkdtemp(prefix="madlab_cache_"))
    net = "tiny" if args.tiny else args.edm_net
    batch, steps = (16, 3) if args.tiny else (256, 18)
    n_real, n_synth, n_aux, n_eval = (48, 16, 16, 40) if args.tiny else (1797, 900, 1797, 2000)
    omega = 0.8
    if dev.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    # probe: training and sampling images/s of this net, to size the kimg budget to the time left
    target = ImageTarget(load_images_cached("digits"))
    streams = SeedStreams([0], device=dev)
    real = target.sample(n_real, streams.keys("real"))
    backend = EDMBackend(EDMConfig(net=net, batch_size=batch, budget="kimg", num_steps=steps,
                                   device=dev).validate(), target.event_shape)
    model = backend.init(streams.keys("init"))
    n_params = sum(p.numel() for p in model.nets[0].parameters())
    probe_kimg = batch * (2 if args.tiny else 20) / 1000
    backend.train(model, real, probe_kimg / 4, streams.keys("train", 0, 1))   # warm-up
    sync(dev)
    t0 = time.perf_counter()
    backend.train(model, real, probe_kimg, streams.keys("train", 0, 2))
    sync(dev)
    train_rate = probe_kimg * 1000 / (time.perf_counter() - t0)
    backend.sample(model, 8, streams.keys("eval", 0, 1))
    n_probe = 16 if args.tiny else 500
    t0 = time.perf_counter()
    backend.sample(model, n_probe, streams.keys("eval", 0, 2))
    sync(dev)
    sample_rate = n_probe / (time.perf_counter() - t0)
    left = args.deadline - time.time()
    fixed = 2 * (n_aux + 2 * (n_synth + n_eval)) / sample_rate + 20   # sampling + FID features
    per_kimg = 2 * 1.25 * 1000 / train_rate                            # base + aux (1/4)
    kimg = max(0.05 if args.tiny else 5.0, min(500.0, (0.6 * left - fixed) / per_kimg))
    if args.tiny:
        kimg = 0.05
    rep.set(net=net, params_M=n_params / 1e6, batch=batch, heun_steps=steps, omega=omega,
            probe={"train_images_per_s": train_rate, "sample_images_per_s": sample_rate},
            kimg_base=kimg, kimg_aux=kimg / 4, time_left_s=left)
    rep.headline(f"net {net} ({n_params / 1e6:.2f} M parameters), probe: {train_rate:,.0f} train "
                 f"images/s, {sample_rate:,.0f} sample images/s ({2 * steps - 1} NFE); budget "
                 f"{kimg:.1f} kimg base + {kimg / 4:.1f} kimg aux per generation")
    kw = dict(backend="edm", dataset="digits", edm_net=net, loop="augment", algo="sims",
              omega=omega, gens=2, seeds=1, n_real=n_real, n_synth=n_synth, n_aux=n_aux,
              epochs=kimg, aux_epochs=kimg / 4, edm_budget="kimg", n_eval=n_eval, edm_steps=steps,
              edm_batch=batch, edm_ema_kimg=min(2.0, kimg / 10), metric=["fid"],
              fid_features="classifier")
    ledger = Ledger(dev)

    def train_label(out, self, model, data, epochs, keys):
        B = min(self.config.batch_size, data.shape[1])
        images = math.ceil(self.budget_images(epochs, data.shape[1]) / B) * B * data.shape[0]
        return f"train n={data.shape[1]} kimg={epochs:g}", images

    def sample_label(out, self, model, n, keys, guide=None, omega=0.0):
        return f"sample{' guided' if guide is not None and omega != 0 else ''}", n * len(keys)

    reset_gpu_memory(dev)
    from madlab.config import RunConfig
    from madlab.runner import run_config
    cfg = RunConfig.from_flat(**kw, device=dev).validate()
    gen_rows = []

    def progress(done, total):
        calls = ledger.close_generation()
        gen_rows.append({k: {"s": v["s"], "images": v["images"],
                             "images_per_s": v["images"] / v["s"] if v["s"] > 0 else None}
                         for k, v in calls.items()})
        rep.set(calls_by_generation=gen_rows)

    with synced_phase_clock(dev), patched(EDMBackend, "train", ledger.timed(EDMBackend.train, train_label)), \
            patched(EDMBackend, "sample", ledger.timed(EDMBackend.sample, sample_label)):
        frame = run_config(cfg, progress=progress)
    fid = {int(r.generation): float(r.value) for r in frame[frame.metric == "fid"].itertuples()}
    rates = {}
    for kind in ("train", "sample guided", "sample"):
        s = sum(v["s"] for g in gen_rows for k, v in g.items() if k.startswith(kind)
                and (kind != "sample" or "guided" not in k))
        im = sum(v["images"] for g in gen_rows for k, v in g.items() if k.startswith(kind)
                 and (kind != "sample" or "guided" not in k))
        rates[kind] = im / s if s > 0 else None
    rep.set(fid_by_generation=fid, images_per_s=rates, phases=phase_table(frame),
            gpu_memory=gpu_memory(dev), rows_file=save_frame(frame, args.out, "edm_rows"))
    rep.headline(f"FID (classifier features, {n_eval} samples vs all digits) by generation: "
                 + ", ".join(f"G{t} {v:.3f}" for t, v in fid.items()),
                 "images/s: training {:,.0f}, sampling unguided {:,.0f}, SIMS-guided {:,.0f}".format(
                     *(rates[k] or float("nan") for k in ("train", "sample", "sample guided"))))
    ok = len(fid) == 2 and all(math.isfinite(v) and v > 0 for v in fid.values())
    rep.status("ok" if ok else "fail")
