"""docs/learners.md, written from the learner records (toy.learners): `python -m madlab.learner_docs`.

tests/test_learners.py fails when the file differs from what this writes, so a learner is
described in its record only.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from toy.learners import DEFAULT_LEARNER, KNOBS, LEARNERS, Learner, listed

PATH = Path(__file__).resolve().parents[1] / "docs" / "learners.md"


def guided_on(learner: Learner) -> str:
    share = Fraction(learner.guided_share).limit_denominator(100)
    if share == 1:
        return "t ≤ T, the whole chain"
    return f"t ≤ {'' if share.numerator == 1 else share.numerator}T/{share.denominator}"


def runs_on(learner: Learner) -> str:
    if learner.fast:
        return "toy.ddpm (the fast path)"
    extra = ", ".join(f"{k}={v}" for k, v in learner.reference_only.items())
    return f"toy.reference (autograd; {extra})"


def cell(value) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def markdown() -> str:
    """The whole of docs/learners.md."""
    import pandas as pd

    from madlab.experiments.common import to_markdown

    def name(n: str) -> str:
        return f"`{n}`" + (" (default)" if n == DEFAULT_LEARNER else "")

    about = pd.DataFrame([{"learner": name(n), "what it is": l.about, "use": l.use} for n, l in LEARNERS.items()])
    knobs = pd.DataFrame([{"learner": name(n), **{k.replace("_", "-"): cell(getattr(l, k)) for k in KNOBS},
                           "SIMS guides on": guided_on(l), "runs on": runs_on(l)} for n, l in LEARNERS.items()])
    flags = listed(f"`--{k.replace('_', '-')}`" for k in KNOBS)
    return f"""# Learners

<!-- Written by `python -m madlab.learner_docs` from the records in toy/learners.py: edit them, not
this file (tests/test_learners.py checks that it is current). -->

The toy DDPM's noise predictor and its training recipe (`--learner`, default `{DEFAULT_LEARNER}`),
chosen by the learner screen and the million-sample tail screen of
[calibration.md](calibration.md) on generation-1 quality and tail health, before any loop ratio
was looked at.

{to_markdown(about)}
A learner presets
{flags};
giving one of them overrides it (`--learner resmlp-sin --layer-norm` adds LayerNorm), and the run
id hashes the resolved values, so `--learner resmlp-ln` and the same with its knobs spelled out are
one run. By default SIMS guides on the low-noise end of the reverse chain (`--guide-t-max`; the
paper's appendix A):

{to_markdown(knobs)}"""


if __name__ == "__main__":
    PATH.write_text(markdown())
    print(f"wrote {PATH}")
