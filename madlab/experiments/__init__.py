"""The SIMS paper's other experiments, one module per experiment (`madlab experiment`): toy analogues
and, `images-*`, the same on real images with the EDM backend. Their settings are in
`madlab.experiments.settings` (torch-free: the command line reads them at start-up)."""
from __future__ import annotations

import importlib

from madlab.experiments import settings as s
from madlab.experiments.settings import SCALES  # noqa: F401 (smoke | quick | paper)

EXPERIMENTS: dict[str, type[s.Experiment]] = {cls.NAME: cls for cls in (
    s.Landscape,          # Figure 3: the parameter-space landscape of (w_a, w_s)
    s.Pollution,          # Figure 6: ST-I, SIMS-I, ST-P, SIMS-P against |D_p|
    s.Shift,              # Figure 7: shifting a two-mode mixture's proportions
    s.MadLoops,           # Alemohammad et al. 2023: the three MAD loops, Gaussian fit
    s.SimsTheory,         # SIMS on the Gaussian fit: exact expectations vs simulation
    s.Accumulate,         # the accumulate family (Gerstgrasser, Kazdan et al. 2024), Gaussian fit
    # on real images (EDM backend; digits by default, a .npz with --set edm.dataset=PATH)
    s.ImagesSelfImprove,  # Figure 4: FID against w and budget B
    s.ImagesPollution,    # Figure 6: ST-I, SIMS-I, ST-P, SIMS-P against |D_p|
    s.ImagesShift,        # Figure 7: class shares and per-group FID against w
    s.ImagesLoop,         # Figure 5 bottom: augment loop, standard vs SIMS, MAD reference
    s.ImagesFid,          # FID floor, its bias against n, pixel vs classifier features
)}


def load(name: str):
    """The experiment's module (`madlab.experiments.landscape` for `landscape`): `Settings`,
    `run(settings, progress) -> Result`, and for the seed-chunked ones `measure` and `result`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"madlab.experiments.{name.replace('-', '_')}")
