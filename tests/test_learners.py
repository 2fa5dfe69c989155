"""The named learners (DDPMConfig.learner) and the SIMS knobs of the toy DDPM on the fast path:
resmlp-ln reproduces madlab 0.1's numbers, the learner presets its knobs and explicit knobs win,
toy-diffusion runs on the reference backend, the fine-tune continues Adam on request, and an
empty guidance interval is standard sampling."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from loops.options import ConfigError
from loops.rng import SeedStreams
from madlab.config import RunConfig
from madlab.runner import build_backend, run_config
from toy.config import LEARNERS, DDPMConfig
from toy.ddpm import ToyDDPM
from toy.params import TrainedParams
from toy.reference import LEARNERS as REFERENCE_LEARNERS
from toy.reference import ReferenceDDPM, reference_config
from toy.targets import paper_gaussian

TINY = dict(gens=3, n_real=64, n_synth=16, n_aux=64, n_eval=64, epochs=2, aux_epochs=1,
            T=10, width=16, depth=1, batch_size=32, metric=["w2", "fd"])

# madlab at 1323d73 (LayerNorm, t / T: the 0.1 learner, then the default), seeds 5 and 6 of TINY:
# values sorted by (seed, generation, metric = fd, w2); printed by that revision's runner
OLD_NUMBERS = {
    "sims": [17.533699018245315, 17.617953524804136, 58.168628733131456, 58.23528478007871,
             4.997054847241557, 5.239894942193364, 4.387787476965047, 4.527696368607647,
             29.670596602919538, 29.403778814655073, 12.683205875935712, 12.701745535250275],
    "standard": [9.390530330831817, 9.611194069587937, 33.06795382602212, 33.22562357896493,
                 6.2324457954110635, 6.420651275953964, 5.001948802123789, 5.065213230719401,
                 19.90432151916737, 19.766739338748586, 8.789972309975267, 8.835022931454471],
}


def _values(frame):
    return frame.set_index(["seed", "generation", "metric"])["value"].sort_index().to_numpy()


@pytest.mark.parametrize("algo", ["sims", "standard"])
def test_resmlp_ln_reproduces_the_old_default_numbers(algo):
    """--learner resmlp-ln gives what --layer-norm --time-embedding scaled gave before the
    learner option existed (float rounding across machines: rtol 1e-4)."""
    frame = run_config(RunConfig.from_flat(algo=algo, seeds=2, first_seed=5, learner="resmlp-ln", **TINY))
    np.testing.assert_allclose(_values(frame), OLD_NUMBERS[algo], rtol=1e-4)


def test_the_learner_presets_its_knobs_and_explicit_knobs_override():
    ln = RunConfig.from_flat(learner="resmlp-ln").validate()
    explicit = RunConfig.from_flat(learner="resmlp-ln", layer_norm=True, time_embedding="scaled",
                                   T=40, depth=2, lr=3e-3, lr_schedule="linear").validate()
    assert ln.run_id() == explicit.run_id()          # the id hashes the resolved values
    assert (ln.toy_ddpm.layer_norm, ln.toy_ddpm.time_embedding) == (True, "scaled")
    default = RunConfig().validate().toy_ddpm
    assert default.learner == "resmlp-sin" and not default.layer_norm
    assert default.time_embedding == "sinusoidal" and default.guide_t_max == default.T == 40
    mixed = DDPMConfig(learner="resmlp-sin", layer_norm=True).validate()
    assert mixed.layer_norm and mixed.time_embedding == "sinusoidal"
    td = DDPMConfig(learner="toy-diffusion", T=20).validate()
    assert (td.T, td.depth, td.lr, td.lr_schedule, td.guide_t_max) == (20, 4, 1e-3, "constant", 20)
    assert RunConfig.from_flat(learner="resmlp-ln").validate().run_id() != RunConfig().validate().run_id()


@pytest.mark.parametrize("name", list(LEARNERS))
def test_each_learner_is_the_reference_learner_of_that_name(name):
    ours = reference_config(DDPMConfig(learner=name))
    assert ours == replace(REFERENCE_LEARNERS[name], guidance_to=ours.T)   # None there: T


@pytest.mark.parametrize("flat, says", [
    (dict(learner="mlp"), "unknown learner 'mlp' (--learner); choose one of resmlp-sin, resmlp-ln, toy-diffusion"),
    (dict(learner="toy-diffusion", layer_norm=True), "toy-diffusion learner is a plain MLP"),
    (dict(learner="toy-diffusion", variance="posterior"), "samples with variance beta"),
    (dict(finetune="resume"), "unknown finetune 'resume'"),
    (dict(guide_t_max=41), "guide-t-max must be at most T = 40"),
    (dict(guide_t_min=0), "guide-t-min must be positive"),
    (dict(lr=float("inf")), "lr must be a finite number"),
])
def test_bad_learner_options_are_one_clear_error(flat, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        RunConfig.from_flat(**flat).validate()


def test_toy_diffusion_runs_on_the_reference_backend():
    cfg = RunConfig.from_flat(learner="toy-diffusion", **{**TINY, "depth": 4}).validate()
    assert isinstance(build_backend(cfg, (2,)), ReferenceDDPM)
    with pytest.raises(ValueError, match="runs on toy.reference.ReferenceDDPM"):
        ToyDDPM(DDPMConfig(learner="toy-diffusion"))


def test_trained_parameters_carry_adam_and_pickle_as_plain_parameters(tmp_path):
    import copy

    backend = ToyDDPM(DDPMConfig(T=5, width=8, depth=1))
    streams = SeedStreams([1, 2])
    data = paper_gaussian().sample(30, streams.keys("real"))
    model = backend.train(backend.init(streams.keys("init")), data, 2, streams.keys("train"))
    assert isinstance(model, TrainedParams) and model.adam["step"] == 2
    assert model.adam["next_lr"] == pytest.approx(3e-3 * 0.01)
    assert set(model.adam["exp_avg"]) == set(model) and copy.deepcopy(model).adam["step"] == 2
    torch.save({"model": model}, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)["model"]
    assert set(loaded) == set(model) and all(torch.equal(loaded[k], model[k]) for k in model)
    assert getattr(loaded, "adam", None) is None


def test_empty_guidance_interval_is_standard_sampling_and_the_guide_is_not_evaluated():
    c = dict(T=12, width=16, depth=1)
    backend = ToyDDPM(DDPMConfig(**c))
    streams = SeedStreams([3, 4, 5])
    base, aux = backend.init(streams.keys("init")), backend.init(streams.keys("aux-init"))
    standard = backend.sample(base, 30, streams.keys("eval"))
    nan_guide = {k: torch.full_like(v, float("nan")) for k, v in aux.items()}
    empty = ToyDDPM(DDPMConfig(guide_t_min=7, guide_t_max=6, **c))
    x = empty.sample(base, 30, streams.keys("eval"), guide=nan_guide, omega=3.0)
    assert torch.equal(x, standard)                          # bit-equal, the guide never ran
    full = backend.sample(base, 30, streams.keys("eval"), guide=aux, omega=3.0)
    late = ToyDDPM(DDPMConfig(guide_t_max=6, **c))
    x_late = late.sample(base, 30, streams.keys("eval"), guide=aux, omega=3.0)
    assert not torch.allclose(x_late, standard) and not torch.allclose(x_late, full)
    # guidance only at t <= 6 = the reference sampler's interval (same weights, same draws)
    ref = ReferenceDDPM(reference_config(late.config))
    torch.testing.assert_close(ref.sample(base, 30, streams.keys("eval"), guide=aux, omega=3.0),
                               x_late, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("learner", ["resmlp-sin", "toy-diffusion"])
def test_continued_fine_tune_and_toy_diffusion_run_end_to_end(learner):
    cfg = RunConfig.from_flat(learner=learner, finetune="continue", guide_t_max=5, seeds=2,
                              **{**TINY, "depth": 2})
    frame = run_config(cfg)
    assert len(frame) == 2 * 3 * 2 and np.isfinite(frame["value"]).all()
    assert (frame["learner"] == learner).all() and (frame["finetune"] == "continue").all()
