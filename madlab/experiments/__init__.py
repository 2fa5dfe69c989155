"""The SIMS paper's other experiments as toy analogues, one module per experiment (`madlab experiment`)."""
from __future__ import annotations

import importlib

SCALES = ("smoke", "quick", "paper")
EXPERIMENTS = {
    "landscape": "landscape",     # Figure 3: the parameter-space landscape of (w_a, w_s)
    "pollution": "pollution",     # Figure 6: ST-I, SIMS-I, ST-P, SIMS-P against |D_p|
    "shift": "shift",             # Figure 7: shifting a two-mode mixture's proportions
    "mad-loops": "mad_loops",     # Alemohammad et al. 2023: the three MAD loops, Gaussian fit
    "sims-theory": "sims_theory", # SIMS on the Gaussian fit: exact expectations vs simulation
    "accumulate": "accumulate",   # the accumulate family (Gerstgrasser, Kazdan et al. 2024), Gaussian fit
}


def load(name: str):
    """The experiment's module: `Settings`, `SCALES`, `run(settings, progress) -> Result`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"madlab.experiments.{EXPERIMENTS[name]}")
