"""Paper Figure 7 on real images: SIMS shifts the class mix of an EDM model's samples (section 4.3).

Classes split into two groups, A (`group`, e.g. digits 0-4) and B (the rest). The base model is
trained on D_r (the data set's own mix, about 50/50 on digits); its samples, labelled by the data
set's classifier, are curated into S with a skewed mix (`curated_share` of group A, e.g. 70 %); the
auxiliary model is the base fine-tuned on S. Guided samples D = D_base + w (D_base - D_aux) move
away from S's mix: towards 1 - curated_share of group A for w > 0, towards S's mix at w = -1 (the
auxiliary model alone). Measured per w: the share of group A among the samples (classifier labels)
and the FID of each group's samples against the real images of that group (true labels).
"""
from __future__ import annotations

import pandas as pd
import torch

from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.images import Bench, estimate, fid_notes, per_seed, summarise_bands, trained
from madlab.experiments.image_settings import ImagesShift as Settings

MAX_DRAWS = 20   # rounds of base samples drawn before giving up on filling S


def in_group(labels: torch.Tensor, group: list[int]) -> torch.Tensor:
    """Boolean mask of the labels that belong to group A."""
    return torch.isin(labels, torch.as_tensor(group, dtype=labels.dtype))


def curate(x: torch.Tensor, is_a: torch.Tensor, n_a: int, n_b: int) -> torch.Tensor | None:
    """[n_a + n_b, C, H, W]: the first n_a images of group A and the first n_b of group B, in that
    order, from one seed's images x [n, C, H, W]; None if either group is short."""
    a, b = is_a.nonzero().flatten(), (~is_a).nonzero().flatten()
    if len(a) < n_a or len(b) < n_b:
        return None
    return torch.cat([x[a[:n_a]], x[b[:n_b]]])


def curated_set(s: Settings, bench: Bench, base, streams) -> torch.Tensor:
    """S [1, n_curated, C, H, W]: base samples, curated to the skewed mix by the classifier's labels."""
    n_a, n_b = s.counts()
    xs = []
    for draw in range(MAX_DRAWS):
        xs.append(bench.backend.sample(base, s.n_curated, streams.keys("aux-sample", 1, draw))[0])
        x = torch.cat(xs)
        picked = curate(x, in_group(bench.classify(x), s.group), n_a, n_b)
        if picked is not None:
            return picked[None]
    raise ValueError(f"the base model almost never samples one of the groups: cannot curate S "
                     f"({n_a} of group A, {n_b} of B) from {MAX_DRAWS * s.n_curated} samples")


def measure_seed(s: Settings, bench: Bench, seed: int, streams, step) -> list[dict]:
    g, backend = streams.keys, bench.backend
    labels = torch.as_tensor(bench.images.labels)
    from madlab.edm.data import to_unit
    reals = {grp: to_unit(bench.images.images[(in_group(labels, s.group) == (grp == "A")).numpy()])
             for grp in ("A", "B")}
    real = bench.target.sample(s.loop.n_real, g("real", 1))
    step(f"base model: {s.loop.epochs:g} {s.edm.budget} on |D_r| = {s.loop.n_real}")
    base = bench.model(f"seed{seed}-base",
                       lambda: backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1)))
    step(f"auxiliary model: |S| = {s.n_curated} curated to {s.curated_share:.0%} group A, B = {s.algo.aux_epochs:g}")
    aux = bench.model(f"seed{seed}-aux", lambda: backend.train(base, curated_set(s, bench, base, streams),
                                                               s.algo.aux_epochs, g("finetune", 1)))
    rows = []
    for omega in s.omegas:
        step(f"w = {omega:g}")
        x = backend.sample(base, s.evaluation.n_eval, g("eval", 1), guide=aux, omega=omega)
        is_a = in_group(bench.classify(x[0]), s.group)
        rows.append(dict(omega=omega, quantity="share A", seed=seed, value=float(is_a.double().mean())))
        rows += [dict(omega=omega, quantity=m, seed=seed, value=v[0]) for m, v in bench.fid(x).items()]
        for grp, mask in (("A", is_a), ("B", ~is_a)):
            if int(mask.sum()) >= 2:
                for m, v in bench.fid_to(x[0][mask], reals[grp]).items():
                    rows.append(dict(omega=omega, quantity=f"{m} group {grp}", seed=seed, value=v))
    return rows


def workload(s: Settings) -> dict:
    """What the default measures, counted (madlab experiment --dry-run); S's rounds counted once
    (a rare group takes more)."""
    train = trained(s, s.loop.epochs, s.loop.n_real) + trained(s, s.algo.aux_epochs, s.n_curated)
    sample = s.n_curated + sum((2 if w != 0 else 1) * s.evaluation.n_eval for w in s.omegas)
    return estimate(s, train, sample)


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    s = settings.validate()
    bench = Bench(s, "images-shift")
    return per_seed(s, bench, 2 + len(s.omegas), progress,
                    lambda seed, st, step: measure_seed(s, bench, seed, st, step))


def result(table: pd.DataFrame, s: Settings) -> Result:
    from madlab.experiments.images_fid import trust_table

    summary = summarise_bands(table, ["quantity", "omega"])
    share = summary[summary.quantity == "share A"].set_index("omega")["mean"]
    headline = {"share A at w = 0 (base)": float(share[0.0]), "share A at w = -1 (auxiliary)": float(share[-1.0]),
                "share A in S": s.curated_share, "target share A (1 - share in S)": 1 - s.curated_share}
    for omega in sorted(share.index):
        if omega > 0:
            headline[f"share A at w = {omega:g}"] = float(share[omega])
    notes = fid_notes(s) + [
        f"group A = classes {s.group}, labelled by the data set's classifier; per-group FID: that "
        "group's samples against the real images of that group (true labels), fewer samples than "
        "n_eval, so a higher floor than the overall FID."]
    return Result(table, summary, headline, lambda: figure(summary, s), notes,
                  tables={"fid-floor": trust_table(s)})


def figure(summary: pd.DataFrame, s: Settings):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    t = summary[summary.quantity == "share A"].sort_values("omega")
    ax.plot(t.omega, 100 * t["mean"], "-o", ms=4, color="C0")
    ax.fill_between(t.omega, 100 * t.lo, 100 * t.hi, color="C0", alpha=0.2)
    ax.axhline(100 * s.curated_share, color="C3", ls=":", label=f"S: {s.curated_share:.0%}")
    ax.axhline(100 * (1 - s.curated_share), color="C2", ls="--", label=f"target: {1 - s.curated_share:.0%}")
    ax.set(xlabel="guidance w", ylabel=f"% of samples in group A {s.group}", title="class share against w")
    ax.legend(fontsize=8)
    ax = axes[1]
    metric = s.evaluation.metric[0]
    for i, grp in enumerate(("A", "B")):
        t = summary[summary.quantity == f"{metric} group {grp}"].sort_values("omega")
        ax.plot(t.omega, t["mean"], "-o", ms=4, color=f"C{i + 4}", label=f"group {grp}")
        ax.fill_between(t.omega, t.lo, t.hi, color=f"C{i + 4}", alpha=0.2)
    ax.set(xlabel="guidance w", ylabel=f"{metric} per group", title=f"{metric} of each group against w")
    ax.legend(fontsize=8)
    fig.suptitle(f"Distribution shift (paper Fig. 7) on {s.edm_config().dataset}: {s.seeds} seeds, bands = "
                 "95 % bootstrap over seeds", fontsize=10)
    fig.tight_layout()
    return fig
