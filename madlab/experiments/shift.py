"""Paper Figure 7 as a toy: SIMS shifts a two-mode mixture's proportions while improving each mode.

p_r = 50/50 mixture of N((-3, 0), I) and N((3, 0), I) (`toy.targets.two_mode_mixture`). The base
toy DDPM is trained on D_r; its samples are assigned to modes by the true posterior and subsampled
into a curated set S with the *complementary* proportions of the desired target p_hat (e.g. 70/30
to reach 30/70); the auxiliary model is the base fine-tuned on S; SIMS samples with
(1 + w) s_base - w s_aux. w = -1 is the auxiliary model alone, w = 0 the base model.
"""
from __future__ import annotations

import pandas as pd
import torch

from analysis.distances import gaussian_w2, moments
from loops import SeedStreams
from madlab.experiments.common import Progress, Result, ddpm_backend, distances, mean_se, no_progress
from madlab.experiments.toy_settings import Shift as Settings
from toy.targets import GaussianMixture, two_mode_mixture

MAX_DRAWS = 20  # pools drawn before giving up on filling the curated set


def assign_modes(x: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """Mode index [N, n] of samples [N, n, d]: the argmax of the true posterior p(mode | x)."""
    diff = x.detach().cpu().to(torch.float64).unsqueeze(-2) - mixture.means          # [N, n, m, d]
    prec = torch.linalg.inv(mixture.covs)                             # [m, d, d]
    maha = torch.einsum("...mi,mij,...mj->...m", diff, prec, diff)
    logp = mixture.weights.log() - 0.5 * maha - 0.5 * torch.logdet(mixture.covs)
    return logp.argmax(-1)


def counts(shares: list[float], size: int) -> list[int]:
    """Integer mode counts with the requested shares that sum to size."""
    k = [round(p * size) for p in shares[:-1]]
    return k + [size - sum(k)]


def curate(x: torch.Tensor, modes: torch.Tensor, shares: list[float], size: int) -> torch.Tensor:
    """[N, size, d]: per seed, the first counts(shares, size)[j] points of each mode j, in order."""
    want = counts(shares, size)
    out = []
    for xs, ms in zip(x, modes):
        parts = []
        for j, k in enumerate(want):
            idx = (ms == j).nonzero().flatten()
            if len(idx) < k:
                raise ValueError(f"only {len(idx)} samples in mode {j}, need {k}")
            parts.append(xs[idx[:k]])
        out.append(torch.cat(parts))
    return torch.stack(out)


def curated_set(backend, base, mixture: GaussianMixture, s: Settings, streams: SeedStreams) -> torch.Tensor:
    """Draw from the base model until every seed can fill S with the curated shares."""
    xs, ms = [], []
    for step in range(MAX_DRAWS):
        x = backend.sample(base, 2 * s.n_curated, streams.keys("aux-sample", 1, step)).cpu()
        xs.append(x), ms.append(assign_modes(x, mixture))
        x, m = torch.cat(xs, 1), torch.cat(ms, 1)
        have = torch.stack([(m == j).sum(1) for j in range(2)], 1)     # [N, 2]
        if bool((have >= torch.tensor(counts(s.curated_shares, s.n_curated))).all()):
            return curate(x, m, s.curated_shares, s.n_curated)
    raise ValueError("the base model almost never samples one of the modes: cannot curate S")


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    """The long table of the seeds first_seed .. first_seed + seeds - 1: one row per (w,
    quantity, seed), seed innermost (chunks of seeds concatenate into it: madlab.experiments.chunks)."""
    s = settings.validate()
    streams, mixture = SeedStreams(range(s.first_seed, s.first_seed + s.seeds)), two_mode_mixture()
    g = streams.keys
    ddpm = s.toy_ddpm           # the toy DDPM's options (learner, batch size, lr)
    backend = ddpm_backend(s.device, learner=ddpm.learner, batch_size=ddpm.batch_size, lr=ddpm.lr)
    total = 2 + len(s.omegas)
    real = mixture.sample(s.loop.n_real, g("real", 1))
    progress(0, total, f"base model: {s.loop.epochs:g} epochs on |D_r| = {s.loop.n_real} (50/50)")
    base = backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1))
    pct = "/".join(f"{p:.0%}" for p in s.curated_shares)
    progress(1, total, f"auxiliary model: curated |S| = {s.n_curated} ({pct}), B = {s.algo.aux_epochs:g} epochs")
    aux = backend.train(base, curated_set(backend, base, mixture, s, streams), s.algo.aux_epochs, g("finetune", 1))
    p_hat = GaussianMixture(torch.tensor(s.target_shares()), mixture.means, mixture.covs, name="p_hat")
    real_hat = p_hat.sample(s.n_ot, g("eval-real", 1))
    rows = []
    for i, omega in enumerate(s.omegas):
        progress(2 + i, total, f"sampling w = {omega:g}")
        x = backend.sample(base, s.evaluation.n_eval, g("eval", 1), guide=aux, omega=omega).cpu()
        modes = assign_modes(x, mixture)
        w2_hat = distances(["w2"], x[:, :s.n_ot], real_hat, p_hat)["w2"]
        values = {"w2 to p_hat": [float(v) for v in w2_hat]}          # quantity -> [value per seed]
        for j in range(2):
            values[f"share mode {j}"], values[f"fd mode {j}"] = [], []
            for k in range(len(streams.seeds)):
                pick = x[k][modes[k] == j]
                values[f"share mode {j}"].append(len(pick) / s.evaluation.n_eval)
                fd = float("nan")
                if len(pick) >= 3:
                    mu, S = moments(pick.unsqueeze(0))
                    fd = float(gaussian_w2(mu[0], S[0], mixture.means[j], mixture.covs[j]))
                values[f"fd mode {j}"].append(fd)
        rows.extend(dict(omega=omega, seed=seed, quantity=q, value=v)
                    for q, vs in values.items() for seed, v in zip(streams.seeds, vs))
    progress(total, total, "done")
    return pd.DataFrame(rows)


def result(table: pd.DataFrame, s: Settings) -> Result:
    """Summary, headline, notes and figure of the whole table (all seeds)."""
    summary, headline = summarise(table, s)
    notes = [f"{s.seeds} seeds; mean over seeds ± one standard error; the same sampler noise at every w.",
             "mode = argmax of the true posterior; fd mode j = Fréchet distance of the samples assigned to "
             "mode j to N(mean_j, I) (the per-class FID of the paper's Fig. 7 right).",
             f"w2 to p_hat: exact OT between the first {s.n_ot} samples and {s.n_ot} points of the target "
             f"p_hat = {s.target_shares()} mixture."]
    return Result(table, summary, headline, lambda: figure(summary, s), notes)


def product_share(base: float, aux: float, omega: float) -> float:
    """Mode-1 share of p ∝ p_base^(1+w) / p_aux^w for separated, identically shaped modes."""
    b = [1 - base, base]
    a = [1 - aux, aux]
    v = [b[j] ** (1 + omega) * a[j] ** (-omega) for j in range(2)]
    return v[1] / sum(v)


def summarise(table: pd.DataFrame, s: Settings):
    rows = []
    for omega, frame in table.groupby("omega"):
        row = dict(omega=omega)
        for q, values in frame.groupby("quantity", sort=False):
            row[q], row[f"{q} se"] = mean_se(values["value"].dropna())
        rows.append(row)
    summary = pd.DataFrame(rows)
    share = summary.set_index("omega")["share mode 1"]
    base, aux = float(share.loc[0.0]), float(share.loc[-1.0])
    summary["share mode 1 (density-product reference)"] = [product_share(base, aux, w) for w in summary.omega]
    goal = s.target_shares()[1]
    hit = None
    ws, vs = summary["omega"].tolist(), share.tolist()
    for i in range(1, len(ws)):
        if (vs[i - 1] - goal) * (vs[i] - goal) <= 0 and ws[i - 1] >= 0:
            hit = ws[i - 1] + (ws[i] - ws[i - 1]) * (goal - vs[i - 1]) / (vs[i] - vs[i - 1] or 1e-12)
            break
    by = summary.set_index("omega")
    headline = {"share of mode 1 at w = -1 (auxiliary)": aux, "share of mode 1 at w = 0 (base)": base,
                f"w where the share reaches {goal:.0%}": hit if hit is not None else "not on the grid",
                "share of mode 1 at the largest w": float(vs[-1])}
    for j in range(2):
        col = by[f"fd mode {j}"]
        headline[f"fd mode {j}: w at the minimum"] = float(col.idxmin())
        headline[f"fd mode {j}: min / base"] = float(col.min() / col.loc[0.0])
    headline["w2 to p_hat: w at the minimum"] = float(by["w2 to p_hat"].idxmin())
    return summary, headline


def figure(summary: pd.DataFrame, s: Settings):
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6))
    w = summary["omega"]
    a.errorbar(w, 100 * summary["share mode 1"], yerr=100 * summary["share mode 1 se"], fmt="-o", capsize=3,
               label="SIMS samples")
    a.plot(w, 100 * summary["share mode 1 (density-product reference)"], "k--", lw=0.8,
           label="∝ p_base^(1+w)/p_aux^w reference")
    a.axhline(100 * s.target_shares()[1], color="C3", ls=":", label=f"target {s.target_shares()[1]:.0%}")
    a.axhline(100 * s.curated_shares[1], color="C7", ls=":", label=f"curated S {s.curated_shares[1]:.0%}")
    a.set(xlabel="ω", ylabel="% of samples in mode 1 (x > 0)", title="distribution shift")
    a.legend(fontsize=8)
    for j in range(2):
        b.errorbar(w, summary[f"fd mode {j}"], yerr=summary[f"fd mode {j} se"], fmt="-o", capsize=3,
                   label=f"mode {j} ({'x < 0' if j == 0 else 'x > 0'})")
    b.set(xlabel="ω", ylabel="Fréchet distance to the mode's Gaussian", title="per-mode quality")
    b.legend(fontsize=8)
    c.errorbar(w, summary["w2 to p_hat"], yerr=summary["w2 to p_hat se"], fmt="-o", capsize=3)
    c.set(xlabel="ω", ylabel="W2 to p_hat", title=f"distance to the target p_hat = {s.target_shares()}")
    fig.suptitle(f"SIMS distribution shift (paper Fig. 7) on the toy DDPM: 50/50 mixture, auxiliary on a "
                 f"{'/'.join(f'{p:.0%}' for p in s.curated_shares)} curated set, {s.seeds} seeds", fontsize=10)
    fig.tight_layout()
    return fig
