"""The SIMS paper's other experiments, one module per experiment (`madlab experiment`): toy analogues
and, `images-*`, the same on real images with the EDM backend. Their settings are in
`toy_settings` and `image_settings` (on the base in `settings`; torch-free: the command line reads
them at start-up)."""
from __future__ import annotations

import importlib

from madlab.experiments import image_settings as im
from madlab.experiments import toy_settings as toy
from madlab.experiments.settings import SCALES, Experiment  # noqa: F401 (smoke | quick | paper)

EXPERIMENTS: dict[str, type[Experiment]] = {cls.NAME: cls for cls in (
    toy.Landscape,          # Figure 3: the parameter-space landscape of (w_a, w_s)
    toy.Pollution,          # Figure 6: ST-I, SIMS-I, ST-P, SIMS-P against |D_p|
    toy.Shift,              # Figure 7: shifting a two-mode mixture's proportions
    toy.MadLoops,           # Alemohammad et al. 2023: the three MAD loops, Gaussian fit
    toy.SimsTheory,         # SIMS on the Gaussian fit: exact expectations vs simulation
    toy.Accumulate,         # the accumulate family (Gerstgrasser, Kazdan et al. 2024), Gaussian fit
    # on real images (EDM backend; digits by default, a .npz with --set edm.dataset=PATH)
    im.ImagesSelfImprove,   # Figure 4: FID against w and budget B
    im.ImagesPollution,     # Figure 6: ST-I, SIMS-I, ST-P, SIMS-P against |D_p|
    im.ImagesShift,         # Figure 7: class shares and per-group FID against w
    im.ImagesLoop,          # Figure 5 bottom: augment loop, standard vs SIMS, MAD reference
    im.ImagesFid,           # FID floor, its bias against n, pixel vs classifier features
)}


def load(name: str):
    """The experiment's module (`madlab.experiments.landscape` for `landscape`): `Settings`,
    `run(settings, progress) -> Result`, and for the seed-chunked ones `measure` and `result`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"madlab.experiments.{name.replace('-', '_')}")
