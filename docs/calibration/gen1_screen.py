"""Screen training settings on generation 1 only: fd of G^1 = A(D_r) and the training time.

Usage: OMP_NUM_THREADS=1 python docs/calibration/gen1_screen.py SEEDS N_EVAL "bs,lr[,epochs[,width]]" ...
"""
import sys
import time

import torch

from analysis.distances import per_seed
from loops import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.targets import paper_gaussian

torch.set_num_threads(1)
seeds, n_eval = int(sys.argv[1]), int(sys.argv[2])
target, streams = paper_gaussian(), SeedStreams(range(seeds))
data = target.sample(1000, streams.keys("real", 1))
floor = per_seed("fd", data, None, target)
print(f"fd of D_r itself (the 1000 real points): mean {floor.mean():.4f}")
for spec in sys.argv[3:]:
    parts = spec.split(",")
    bs, lr = int(parts[0]), float(parts[1])
    epochs = float(parts[2]) if len(parts) > 2 else 100
    width = int(parts[3]) if len(parts) > 3 else 64
    backend = ToyDDPM(DDPMConfig(batch_size=bs, lr=lr, width=width))
    tick = time.perf_counter()
    model = backend.train(backend.init(streams.keys("init", 1)), data, epochs,
                          streams.keys("train", 1))
    seconds = time.perf_counter() - tick
    fd = per_seed("fd", backend.sample(model, n_eval, streams.keys("eval", 1)), None, target)
    print(f"batch {bs:5d} lr {lr:g} epochs {epochs:g} width {width}: fd(G^1) mean {fd.mean():.4f} "
          f"median {fd.median():.4f} max {fd.max():.4f}  train {seconds:.1f}s", flush=True)
