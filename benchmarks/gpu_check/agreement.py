"""Part d of the GPU check: CPU against CUDA at the science level (the default experiment's medians
over seeds within a bootstrap band), and the Philox streams' bits on both devices."""
from __future__ import annotations

import math
import os
import time

from benchmarks.gpu_check.report import Report
from benchmarks.gpu_check.timing import Ledger, default_experiment, save_frame, timed_run


def cpu_chunk(kw: dict, first_seed: int, seeds: int):
    """One CPU worker of part d (spawned: it imports this module by its name): a chunk of the
    seeds, one torch thread (seeds are independent: a seed's numbers do not depend on its chunk)."""
    import torch
    torch.set_num_threads(1)
    try:
        import ot  # noqa: F401
        os.environ["MADLAB_OT"] = "pot"
    except ImportError:
        os.environ["MADLAB_OT"] = "auction"
    from madlab.config import RunConfig
    from madlab.runner import run_config
    cfg = RunConfig.from_flat(**{**kw, "seeds": seeds, "first_seed": first_seed, "seed_chunk": seeds},
                              device="cpu").validate()
    return run_config(cfg)


def agreement(one, other, name: str, other_name: str) -> tuple[list[dict], bool]:
    """Per metric and generation: the medians over seeds of two runs of the same seeds, within
    3 sqrt(se^2 + se'^2) (bootstrap standard errors of the medians); and the paired per-seed
    relative differences, for information."""
    import numpy as np
    comparisons, ok = [], True
    for (metric, t), g in one.groupby(["metric", "generation"]):
        a = g.sort_values("seed").value.to_numpy(dtype=float)
        h = other[(other.metric == metric) & (other.generation == t)].sort_values("seed")
        b = h.value.to_numpy(dtype=float)
        if len(a) != len(b) or not len(a):
            comparisons.append({"metric": metric, "generation": int(t), "within": False,
                                "why": f"{len(a)} seeds against {len(b)}"})
            ok = False
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        ma = float(np.median(a[fa])) if fa.any() else float("nan")
        mb = float(np.median(b[fb])) if fb.any() else float("nan")
        band = 3 * math.hypot(bootstrap_se_median(a), bootstrap_se_median(b))
        within = ma == mb or abs(ma - mb) <= band
        both = fa & fb
        rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-300)
        comparisons.append({"metric": metric, "generation": int(t), f"median_{name}": ma,
                            f"median_{other_name}": mb, "diff": ma - mb, "band": band,
                            "within": bool(within),
                            "non_finite": {name: int((~fa).sum()), other_name: int((~fb).sum())},
                            "paired_rel_diff_median": float(np.median(rel)) if len(rel) else None,
                            "paired_rel_diff_max": float(rel.max()) if len(rel) else None,
                            "share_seeds_within_1e-3": float((rel < 1e-3).mean()) if len(rel) else None})
        ok &= bool(within)
    return comparisons, ok


def describe(c: dict, name: str, other_name: str) -> str:
    head = f"{c['metric']} G{c['generation']}: "
    if "band" not in c:
        return head + f"not compared ({c.get('why')})"
    paired = c["paired_rel_diff_median"]
    return (head + f"median {name} {c['median_device' if 'median_device' in c else 'median_variant']:.4f} "
            f"vs {other_name} {c['median_cpu' if 'median_cpu' in c else 'median_first']:.4f} (band "
            f"+-{c['band']:.4f}) {'ok' if c['within'] else 'OUTSIDE'}; paired rel. diff median "
            + (f"{paired:.1e}" if paired is not None else "-"))


def bootstrap_se_median(v, reps: int = 2000, seed: int = 0) -> float:
    import numpy as np
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    idx = np.random.default_rng(seed).integers(0, len(v), (reps, len(v)))
    return float(np.median(v[idx], axis=1).std())


def rng_bits(dev: str) -> dict:
    """Philox draws of the same keys on the CPU (C kernel, or torch ops) and on `dev` (torch ops):
    equal bits, per kind, and a training-sized draw through StreamKeys."""
    import torch
    from loops import philox
    from loops.rng import SeedStreams
    keys = SeedStreams(range(64)).keys("train", 1)
    out = {}
    for kind, name in enumerate(("uniform32", "normal32", "uniform64", "normal64")):
        a = philox.draw(keys.keys, kind, 7, 100_003)
        if dev.startswith("cuda"):
            b = philox.draw(keys.on(dev), kind, 7, 100_003).cpu()
        else:  # the CPU check of the same claim: C kernel against torch ops
            b = philox.draw_torch(keys.keys, kind, 7, 100_003)
        out[name] = {"equal": bool(torch.equal(a, b)), "mismatches": int((a != b).sum())}
    a = keys.randn((8, 1250, 4))
    b = keys.randn((8, 1250, 4), device=dev).cpu()
    out["streamkeys_randn_train_shape"] = {"equal": bool(torch.equal(a, b)), "mismatches": int((a != b).sum())}
    return out


def run(args, rep: Report) -> None:
    import pandas as pd
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    dev = args.device
    # 1. the bits
    bits = rng_bits(dev)
    bits_ok = all(v["equal"] for v in bits.values())
    rep.set(rng_bits=bits, rng_bits_equal=bits_ok)
    rep.headline(f"Philox bits {'equal' if bits_ok else 'DIFFER'} on cpu and {dev} "
                 f"({', '.join(k for k, v in bits.items() if not v['equal']) or 'all kinds'})")
    # 2. the science
    seeds, gens = (6, 2) if args.tiny else (64, 3)
    kw = default_experiment(args, seeds, gens)
    workers = 2 if args.tiny else max(1, min(16, (os.cpu_count() or 2) - 1))
    chunk = math.ceil(seeds / workers)
    rep.set(config=kw, cpu_workers=workers)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(cpu_chunk, kw, s, min(chunk, seeds - s)) for s in range(0, seeds, chunk)]
        os.environ.setdefault("MADLAB_OT", "auto")
        ledger = Ledger(dev)
        gpu, info = timed_run(kw, dev, ledger)
        gpu_s = time.perf_counter() - started
        cpu = pd.concat([f.result() for f in futures], ignore_index=True)
    cpu_s = time.perf_counter() - started
    gpu["device"], cpu["device"] = dev, "cpu"
    both = pd.concat([gpu, cpu], ignore_index=True)
    rep.set(rows_file=save_frame(both, args.out, "agreement_rows"), wall_s={dev: gpu_s, "cpu (all)": cpu_s})
    comparisons, ok = agreement(gpu, cpu, "device", "cpu")
    rep.set(comparisons=comparisons, band_rule=(
        f"|median_device - median_cpu| <= 3 sqrt(se_device^2 + se_cpu^2) (device = {dev}), se = "
        "bootstrap standard error of the median over seeds (2000 resamples); the runs share keys "
        "and data, so treating them as independent makes the band conservative"))
    rep.headline(*[describe(c, dev, "cpu") for c in comparisons])
    rep.status("ok" if ok and bits_ok else "fail")
