"""Screen SIMS at generation 1: fd of G^1 = A(D_r) against omega for several training settings.

The base model and the auxiliary model (base fine-tuned for 50 epochs on n_s = 2000 of its own
samples) do not depend on omega, so one training serves every omega (the paper's Figure 5 top
left). Usage:
  OMP_NUM_THREADS=1 python docs/calibration/sims_gen1_screen.py SEEDS N_EVAL "bs,lr" ...
"""
import sys
import time

import torch

from analysis.distances import per_seed
from loops import SeedStreams, make_algorithm
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.targets import paper_gaussian

OMEGAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
torch.set_num_threads(1)
seeds, n_eval = int(sys.argv[1]), int(sys.argv[2])
target, streams = paper_gaussian(), SeedStreams(range(seeds))
data = target.sample(1000, streams.keys("real", 1))
for spec in sys.argv[3:]:
    bs, lr = spec.split(",")
    backend = ToyDDPM(DDPMConfig(batch_size=int(bs), lr=float(lr)))
    tick = time.perf_counter()
    sims = make_algorithm("sims", epochs=100, omega=0.0, n_aux=2000, aux_epochs=50)
    trained = sims(backend, data, streams, 1)
    cells = []
    for omega in OMEGAS:
        x = backend.sample(trained.model, n_eval, streams.keys("eval", 1),
                           guide=trained.guide, omega=omega)
        fd = per_seed("fd", x, None, target)
        cells.append(f"w={omega:g}: {fd.mean():.3f}")
    print(f"batch {bs} lr {lr} (mean fd over {seeds} seeds, n_eval {n_eval}; "
          f"{time.perf_counter() - tick:.0f}s): " + "  ".join(cells), flush=True)
