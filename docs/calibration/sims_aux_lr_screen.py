"""Screen SIMS at generation 1 with a gentler auxiliary fine-tune: fd of G^1 against omega.

Base: the old default toy DDPM (batch 64, lr 1e-3 decaying linearly to 1e-5, 100 epochs on D_r).
Auxiliary: base fine-tuned 50 epochs on n_s = 2000 of its own samples with the same batch but a
smaller starting learning rate AUX_LR (madlab has no option for this yet: the fine-tune reuses the
base's lr). One training serves every omega. Usage:
  OMP_NUM_THREADS=1 python docs/calibration/sims_aux_lr_screen.py SEEDS N_EVAL AUX_LR ...
"""
import sys
import time

import torch

from analysis.distances import per_seed
from loops import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.targets import paper_gaussian

OMEGAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
torch.set_num_threads(1)
seeds, n_eval = int(sys.argv[1]), int(sys.argv[2])
target, streams = paper_gaussian(), SeedStreams(range(seeds))
data = target.sample(1000, streams.keys("real", 1))
backend = ToyDDPM(DDPMConfig(batch_size=64, lr=1e-3))
base = backend.train(backend.init(streams.keys("init", 1)), data, 100,
                     streams.keys("train", 1))
synthetic = backend.sample(base, 2000, streams.keys("aux-sample", 1))
for aux_lr in sys.argv[3:]:
    tick = time.perf_counter()
    tuner = ToyDDPM(DDPMConfig(batch_size=64, lr=float(aux_lr)))
    aux = tuner.train(base, synthetic, 50, streams.keys("finetune", 1))
    cells = []
    for omega in OMEGAS:
        x = backend.sample(base, n_eval, streams.keys("eval", 1), guide=aux, omega=omega)
        cells.append(f"w={omega:g}: {per_seed('fd', x, None, target).mean():.3f}")
    print(f"aux lr {aux_lr} (mean fd over {seeds} seeds, n_eval {n_eval}; "
          f"{time.perf_counter() - tick:.0f}s): " + "  ".join(cells), flush=True)
