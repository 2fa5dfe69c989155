"""`madlab samples DIR --seed S --generation T`: one seed-generation's samples against p_r's contours."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from madlab.commands.options import argument, command, option
from madlab.config import ConfigError


OWN_OPTIONS = [
    argument("directory", metavar="DIR", type=click.Path(path_type=Path), help="A run or sweep directory."),
    option("--seed", type=int, required=True, help="Which seed."),
    option("--generation", type=int, required=True, help="Which generation t (1..gens)."),
    option("--run", help="The configuration (run id, the results' `run` column) when DIR is a sweep with several holding SEED."),
    option("--out", type=click.Path(path_type=Path), help="The PNG to write (a folder: samples-seed<S>-gen<T>.png in it; .png is added to a name without it) [default: DIR/report/samples-seed<S>-gen<T>.png]."),
    option("--regenerate", is_flag=True, help="Recompute the samples (SEED alone, generations 1..T) instead of reading saved ones: for runs made without --save-samples; equal to the run's, bit for bit on the same machine and build."),
]


def register(app: click.Group) -> None:
    def samples(directory: Path, seed: int, generation: int, run: Optional[str], out: Optional[Path],
                regenerate: bool) -> None:
        """Scatter one seed-generation's evaluation samples against p_r's Mahalanobis contours
        (radius 1, 2, 3, 5), mark the samples beyond radius 5 and print their count and the largest
        |x|. Reads the samples a run saved with --save-samples, or recomputes them with --regenerate.

        Example: madlab run --gens 13 --save-samples --out runs/a && madlab samples runs/a --seed 13 --generation 13
        """
        import numpy as np
        import torch

        from analysis import plots
        from analysis.metrics import OUTLIER_RADIUS
        from analysis.tails import components, mahalanobis_radius, own_rate
        from madlab import samples as saved
        from madlab.runner import regenerate_samples
        from toy.targets import make_target

        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"{directory} is not a directory; give a run or sweep directory")
        x, run_id, options = (regenerate_samples if regenerate else saved.load)(directory, seed, generation, run)
        target = make_target(options["target"])
        r = mahalanobis_radius(torch.from_numpy(x), target).numpy()
        far = ~(r <= OUTLIER_RADIUS)                           # non-finite samples count as far
        finite = np.isfinite(x).all(1)
        largest = float(np.linalg.norm(x[finite], axis=1).max()) if finite.any() else float("nan")
        means, covs = (t.numpy() for t in components(target))
        title = (f"run {run_id}, seed {seed}, generation {generation}: {len(x)} samples, {far.sum()} beyond "
                 f"Mahalanobis radius {OUTLIER_RADIUS:g}, largest |x| {largest:.3g}"
                 + (" (regenerated)" if regenerate else ""))
        fig = plots.samples_figure(x[finite], means, covs, far[finite], title=title)
        name = f"samples-seed{seed}-gen{generation}.png"
        path = directory / "report" / name if out is None else out / name if out.is_dir() else out
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")          # what is written is what is printed
        from madlab.store import atomic_path
        with atomic_path(path) as tmp:                         # a full disk leaves no 0-byte figure
            fig.savefig(tmp, dpi=150, format="png")
        print(f"seed {seed}, generation {generation} (run {run_id}{', regenerated' if regenerate else ''}): "
              f"{len(x)} samples, {far.sum()} beyond Mahalanobis radius {OUTLIER_RADIUS:g} "
              f"({far.mean():.2%}; p_r's own share {own_rate(target):.2g}), largest |x| {largest:.4g}"
              + (f", {(~finite).sum()} not finite" if (~finite).any() else ""))
        print(f"wrote {path}")

    app.add_command(command("samples", samples, OWN_OPTIONS))
