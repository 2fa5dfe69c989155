"""Estimator floors: the distance of a perfect model (samples drawn from p_r itself).

fd at n samples and exact W2 at 1000 vs 1000, mean and sd over 64 independent draws.
Usage: python docs/studies/estimator-floors/floors.py
"""
import torch

from analysis.distances import per_seed
from loops import SeedStreams
from toy.targets import paper_gaussian

target, streams = paper_gaussian(), SeedStreams(range(64))
for n in (1000, 4000, 16000):
    fd = per_seed("fd", target.sample(n, streams.keys("eval", n)), None, target)
    print(f"fd floor at n_eval {n:6d}: mean {fd.mean():.4f} sd {fd.std():.4f}")
x = target.sample(1000, streams.keys("eval", 1))
y = target.sample(1000, streams.keys("eval-real", 1))
w2 = per_seed("w2", x, y, target)
print(f"w2 floor at 1000 vs 1000: mean {w2.mean():.4f} sd {w2.std():.4f}")
