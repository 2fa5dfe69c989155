"""The toy DDPM's named learners (`--learner`), one record each: the knobs it presets, where SIMS
guides by default, which code runs it, and what it is for.

Every reader of a learner reads it here: `DDPMConfig.validate` fills the knobs, `--learner`'s help
is `learner_help()`, `toy.reference.learner` builds the autograd reference from it,
`madlab.backends` picks the fast path or the reference, and docs/learners.md is written from it
(`python docs/make_learners.py`; tests/test_learners.py checks it is current). A new learner is
one more record in `LEARNERS`.

Torch-free (the CLI reads it at start-up).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# DDPMConfig's options that a learner presets (each left at None there takes its learner's value)
KNOBS = ("T", "depth", "time_embedding", "layer_norm", "activation", "lr", "lr_schedule")


@dataclass(frozen=True)
class Learner:
    """One noise predictor and its training recipe."""

    name: str                 # --learner NAME
    summary: str              # its words in --learner's help
    about: str                # what it is (docs/learners.md, Markdown)
    use: str                  # what it was measured to do, when to pick it (docs/learners.md, Markdown)
    T: int                    # diffusion steps
    depth: int                # residual blocks (resmlp) or hidden layers (mlp)
    time_embedding: str       # scaled (t / T) | raw (t) | sinusoidal
    layer_norm: bool          # LayerNorm inside the residual blocks
    activation: str           # relu | silu | gelu | tanh
    lr: float                 # Adam learning rate
    lr_schedule: str          # linear | constant
    # SIMS guides on the reverse steps t <= guided_share * T by default (--guide-t-max), the
    # low-noise end of the chain; 1.0 is the whole chain (the paper's appendix A)
    guided_share: float = 1.0
    # toy.reference.ReferenceConfig fields beyond the knobs that toy.ddpm's fast path does not
    # have; a learner with any runs on the autograd reference, toy.reference.ReferenceDDPM
    reference_only: dict[str, Any] = field(default_factory=dict)

    @property
    def fast(self) -> bool:
        """Whether toy.ddpm.ToyDDPM (the fast path) runs it, rather than toy.reference."""
        return not self.reference_only

    def knobs(self) -> dict[str, Any]:
        """{DDPMConfig option: value} of the knobs it presets."""
        return {name: getattr(self, name) for name in KNOBS}


DEFAULT_LEARNER = "resmlp-silu"
# chosen by the learner screen and the million-sample tail screen of docs/calibration.md
# ("Learner screen", "Tail screen at a million samples") on generation-1 quality and tail health,
# before any loop ratio was looked at
LEARNERS: dict[str, Learner] = {learner.name: learner for learner in [
    Learner(
        "resmlp-silu",
        summary="residual SiLU MLP, no LayerNorm, sinusoidal time input",
        about="residual MLP, width 64 × 2 blocks, **SiLU**, **no LayerNorm**, **sinusoidal time "
              "input** (8 frequencies); cosine schedule, full batch, Adam decaying linearly to 1 %. "
              "The tail screen's winner: `resmlp-sin` with SiLU, whose far-field ε is nearer the "
              "exact one",
        use="at generation 1: W2 0.28 (p_r's own sampling floor: 0.26); beyond Mahalanobis radius "
            "5, 1–3 of 1.024 M samples (p_r's own: 3.8), also under SIMS at ω = 3; in the flagship "
            "loop (ω = 3, 12 generations, 64 seeds) 0.7x p_r's own share; far-field ε 0.80–0.97 "
            "of the exact ε; Figure 5 (32 seeds × 40 generations, [figure5.md](figure5.md)): no "
            "MAD, SIMS nothing to remove. Torch ops, about 1.3x `resmlp-sin`'s CPU time",
        T=40, depth=2, time_embedding="sinusoidal", layer_norm=False, activation="silu", lr=3e-3,
        lr_schedule="linear",
        # the last quarter: the widest interval screened (t <= T, T/2, T/4) whose guided tail at
        # omega = 3 stays within 2x of p_r's own ("Tail screen at a million samples": 1 and 3 of
        # 1.024 M samples beyond radius 5 on two seed sets, against 15 and 20 on t <= T/2); its
        # W2 and fd are the better too
        guided_share=0.25),
    Learner(
        "resmlp-sin",
        summary="the same with ReLU, the default before the tail screen; fused CPU kernels, faster",
        about="the same with ReLU: the first screen's winner, the default until the tail screen",
        use="W2 0.28 at generation 1, but 4–6x p_r's share beyond radius 5, 18–20x under SIMS at "
            "ω = 3; its Figure 5 (32 seeds × 40 generations) is the same as `resmlp-silu`'s. Fused "
            "CPU kernels",
        T=40, depth=2, time_embedding="sinusoidal", layer_norm=False, activation="relu", lr=3e-3,
        lr_schedule="linear",
        # the late half ("SIMS knobs": omega = 3 gives W2 0.33 against 0.46 on the whole chain)
        guided_share=0.5),
    Learner(
        "resmlp-ln",
        summary="madlab 0.1's: LayerNorm, time input t/T",
        about="madlab 0.1's learner: the same with LayerNorm and time input t/T",
        use="reproduces earlier numbers exactly (`--learner resmlp-ln` = the old `--layer-norm "
            "--time-embedding scaled`); its bounded ε puts ~1 % of samples at \\|x\\| = 10–1000",
        T=40, depth=2, time_embedding="scaled", layer_norm=True, activation="relu", lr=3e-3,
        lr_schedule="linear"),
    Learner(
        "toy-diffusion",
        summary="the paper's cited learner, albarji/toy-diffusion: plain 4 x 64 MLP, raw t, T=39, "
                "Adam 1e-3 constant; the notebook's data standardisation is --standardize; "
                "autograd; the paper's setting",
        about="the learner the SIMS paper cites, albarji/toy-diffusion: Linear(3, 64) → 4 × "
              "[Linear, ReLU] → Linear(64, 2) on [x, raw integer t], data in order "
              "(toy/reference.py gives every detail of the notebook). The notebook also "
              "standardises its data (one scalar mean and std over all coordinates); madlab does "
              "that with `--standardize` (off by default: the recipe ablation, "
              "[studies/fig5-paper-recipe](studies/fig5-paper-recipe/README.md), chose raw data and "
              "training from scratch as the paper's setting)",
        use="**the paper's setting** (`figure5-quick`, `figure5-paper`): ~4–5 % of its samples "
            "beyond radius 5 at generation 1, and standard training goes MAD in the loop. Runs on "
            "the autograd reference (`toy/reference.py`), about 1.1x `resmlp-silu`'s CPU time per "
            "seed-generation",
        T=39, depth=4, time_embedding="raw", layer_norm=False, activation="relu", lr=1e-3,
        lr_schedule="constant",
        # the notebook's network, schedule and data order, which the fast path does not have
        reference_only=dict(arch="mlp", max_beta=1.0, train_from_zero=True, shuffle=False)),
]}
REFERENCE_LEARNERS = tuple(name for name, learner in LEARNERS.items() if not learner.fast)


def learner_default(name: str, learner: str = DEFAULT_LEARNER):
    """Knob `name`'s value under `learner` (e.g. the default learner's lr, for the experiments)."""
    return getattr(LEARNERS[learner], name)


def listed(words) -> str:
    """`a, b and c`."""
    words = list(words)
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def learner_help() -> str:
    """`--learner`'s help: every learner's summary, then what a learner presets."""
    parts = [f"{name} ({learner.summary}{'; the default' if name == DEFAULT_LEARNER else ''})"
             for name, learner in LEARNERS.items()]
    presets = listed(knob.replace("_", "-") for knob in KNOBS)
    return (f"The noise predictor and its recipe: {', '.join(parts)}. It presets {presets}; "
            "giving one of them overrides it.")
