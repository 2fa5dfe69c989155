"""The screen's winner on toy/ddpm.py's fast path: same gen-1 numbers as the reference (seeds 0..15).

Usage (from the repository root): PYTHONPATH=. OMP_NUM_THREADS=1 python docs/calibration/fast_path_check.py
"""
import time, torch
torch.set_num_threads(1)
from toy.ddpm import ToyDDPM, DDPMConfig
from toy.reference import ReferenceDDPM, learner
from loops import SeedStreams
from toy.targets import paper_gaussian
from analysis.distances import per_seed
from analysis.tails import outlier_share
tg = paper_gaussian(); s = SeedStreams(range(16))
data = tg.sample(1000, s.keys("real", 1)); real = tg.sample(1000, s.keys("eval-real", 1))
for name, fast_cfg in [("resmlp-sin", DDPMConfig(layer_norm=False, time_embedding="sinusoidal")), ("resmlp-ln", DDPMConfig())]:
    fast = ToyDDPM(fast_cfg)
    t0 = time.process_time(); m = fast.train(fast.init(s.keys("init", 1)), data, 100, s.keys("train", 1)); t1 = time.process_time()
    x = fast.sample(m, 1000, s.keys("eval", 1)); t2 = time.process_time()
    w = per_seed("w2", x, real)
    ref = ReferenceDDPM(learner("resmlp-ln", layer_norm=fast_cfg.layer_norm, time_input=fast_cfg.time_embedding))
    t3 = time.process_time(); r = ref.train(ref.init(s.keys("init", 1)), data, 100, s.keys("train", 1)); t4 = time.process_time()
    xr = ref.sample(r, 1000, s.keys("eval", 1))
    wr = per_seed("w2", xr, real)
    print(f"{name}: fast path (fused={fast.fused}) W2 mean {w.mean():.3f} median {w.median():.3f} beyond r=5 {outlier_share(x, tg).mean()*100:.2f} %  "
          f"| reference W2 mean {wr.mean():.3f} median {wr.median():.3f} | max |W2 fast - ref| over seeds {(w-wr).abs().max():.2e} | "
          f"CPU s: fast train {t1-t0:.1f}, sample {t2-t1:.1f}; reference train {t4-t3:.1f}")
