"""EDM backend: preconditioning identities, loss, Heun sampler on exact Gaussian denoisers, SIMS
guidance against an independent ODE solve, the ensemble backend, and a tiny loop on digits."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from loops.rng import SeedStreams
from madlab.config import ConfigError, RunConfig
from madlab.edm.backend import EDMBackend, EDMConfig
from madlab.edm.data import ImageTarget, load_images, to_uint8, to_unit
from madlab.edm.guidance import SimsGuidance
from madlab.edm.loss import denoising_loss, draw_sigma
from madlab.edm.networks import make_unet
from madlab.edm.precond import Denoiser, edm_coefficients, loss_weight, vp_coefficients, vp_sigma, vp_sigma_inv
from madlab.edm.sampler import ImageNoise, heun_sampler, sample_images, sigma_steps

SIGMAS = torch.logspace(-4, 4, 33, dtype=torch.float64)


# ---------------------------------------------------------------- preconditioning and loss
def test_edm_preconditioning_limits_and_unit_variance():
    sd = 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(SIGMAS, sd)
    # sigma -> 0: D(x; sigma) -> x (skip everything, network output weighted by ~sigma)
    assert c_skip[0] == pytest.approx(1.0, abs=1e-7) and c_out[0] == pytest.approx(1e-4, rel=1e-6)
    # sigma -> inf: D -> sigma_data * F(x / sigma), the skip connection vanishes
    assert c_skip[-1] == pytest.approx(0.0, abs=1e-8) and c_out[-1] == pytest.approx(sd, rel=1e-7)
    assert (c_in * SIGMAS)[-1] == pytest.approx(1.0, rel=1e-7)
    # unit variance of the network input and of its effective training target, at every sigma
    torch.testing.assert_close(c_in ** 2 * (SIGMAS ** 2 + sd ** 2), torch.ones_like(SIGMAS))
    target_var = ((1 - c_skip) ** 2 * sd ** 2 + c_skip ** 2 * SIGMAS ** 2) / c_out ** 2
    torch.testing.assert_close(target_var, torch.ones_like(SIGMAS))
    # lambda(sigma) = 1 / c_out^2: every sigma contributes equally at initialisation
    torch.testing.assert_close(loss_weight(SIGMAS, "edm", sd) * c_out ** 2, torch.ones_like(SIGMAS))
    torch.testing.assert_close(c_noise, SIGMAS.log() / 4)


def test_vp_preconditioning_matches_table_1():
    t = torch.linspace(1e-5, 1, 50, dtype=torch.float64)
    sigma = vp_sigma(t)
    torch.testing.assert_close(vp_sigma_inv(sigma), t)
    torch.testing.assert_close(sigma, torch.sqrt(torch.exp(0.5 * 19.9 * t ** 2 + 0.1 * t) - 1))
    c_skip, c_out, c_in, c_noise = vp_coefficients(sigma)
    torch.testing.assert_close(c_noise, 999 * t)          # c_noise = (M - 1) sigma^-1(sigma)
    torch.testing.assert_close(c_out, -sigma)             # F predicts the noise: D = x - sigma eps
    assert (c_skip == 1).all()
    torch.testing.assert_close(c_in, 1 / torch.sqrt(1 + sigma ** 2))
    torch.testing.assert_close(loss_weight(sigma, "vp") * c_out ** 2, torch.ones_like(sigma))


class Zero(torch.nn.Module):
    def forward(self, x, c_noise):
        return torch.zeros_like(x)


class Record(torch.nn.Module):
    """F(x, c_noise) = 2 x, remembering what it was given."""

    def forward(self, x, c_noise):
        self.x, self.c_noise = x, c_noise
        return 2 * x


@pytest.mark.parametrize("precond", ["edm", "vp"])
def test_denoiser_wires_the_coefficients(precond):
    D = Denoiser(Record(), precond, sigma_data=0.5)
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 30.0], dtype=torch.float64)
    coef = edm_coefficients(sigma, 0.5) if precond == "edm" else vp_coefficients(sigma)
    c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in coef)
    out = D(x, sigma)
    torch.testing.assert_close(D.net.x.double(), c_in * x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(D.net.c_noise.double(), c_noise.flatten(), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out, c_skip * x + c_out * 2 * (c_in * x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precond", ["edm", "vp"])
def test_loss_of_the_zero_network_is_one_in_expectation(precond):
    """With F = 0, E[lambda(sigma) |D(y + n; sigma) - y|^2] = lambda c_out^2 (target variance) = 1 for
    data of standard deviation sigma_data, at every sigma: breaks if c_skip, c_out or lambda is wrong."""
    g = torch.Generator().manual_seed(0)
    D = Denoiser(Zero(), precond, sigma_data=0.5)
    for sigma in (0.01, 0.3, 2.0, 40.0):
        y = 0.5 * torch.randn(4000, 1, 4, 4, generator=g, dtype=torch.float64)
        n = torch.randn(4000, 1, 4, 4, generator=g, dtype=torch.float64)
        loss = denoising_loss(D, y, torch.full((4000,), sigma, dtype=torch.float64), n)
        assert loss.mean().item() == pytest.approx(1.0, abs=0.02)


def test_training_sigma_distribution():
    g = torch.Generator().manual_seed(1)
    z, u = torch.randn(200_000, generator=g), torch.rand(200_000, generator=g)
    log_sigma = draw_sigma(z, u, "edm").log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)
    vp = draw_sigma(z, u, "vp")
    assert vp.min() >= vp_sigma(torch.tensor(1e-5)) - 1e-9 and vp.max() <= vp_sigma(torch.tensor(1.0)) + 1e-6


# ---------------------------------------------------------------- sampler and guidance
def gaussian_denoiser(mu, S):
    """The exact denoiser of N(mu, S) data: E[y | y + sigma n = x] = mu + S (S + sigma^2 I)^-1 (x - mu)."""
    mu, S = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(S, dtype=torch.float64)
    I = torch.eye(len(mu), dtype=torch.float64)

    def D(x, sigma):
        return mu + (x - mu) @ torch.linalg.solve(S + float(sigma) ** 2 * I, S)  # (S+s²I)^-1 S = (S (S+s²I)^-1)^T
    return D


MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
COV = torch.tensor([[2.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]], dtype=torch.float64)


def assert_moments(x, mu, S, n_se=5.0):
    n = len(x)
    var = torch.diagonal(S)
    mean_se = (var / n).sqrt()
    assert ((x.mean(0) - mu).abs() < n_se * mean_se).all(), (x.mean(0), mu)
    cov_se = ((var[:, None] * var[None, :] + S ** 2) / n).sqrt()
    assert ((torch.cov(x.T) - S).abs() < n_se * cov_se).all(), (torch.cov(x.T), S)


def test_sigma_schedule():
    t = sigma_steps(18, 0.002, 80.0, 7.0)
    assert len(t) == 19 and t[0] == pytest.approx(80.0) and t[17] == pytest.approx(0.002) and t[18] == 0
    assert (t[1:] < t[:-1]).all()
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert sigma_steps(3, 0.002, 80.0, 7.0)[1] == pytest.approx(mid)


def test_heun_with_exact_denoiser_reproduces_the_gaussian():
    noise = ImageNoise(range(20_000), (3,), dtype=torch.float64)
    x = heun_sampler(gaussian_denoiser(MU, COV), noise, num_steps=64)
    assert_moments(x, MU, COV)


def test_heun_with_churn_reproduces_the_gaussian():
    noise = ImageNoise(range(4000), (3,), dtype=torch.float64)
    x = heun_sampler(gaussian_denoiser(MU, COV), noise, num_steps=48, S_churn=20, S_min=0.05, S_max=50)
    assert_moments(x, MU, COV)


def test_a_wrong_denoiser_fails_the_moment_check():
    """The moment check has teeth: a denoiser of a 10 % wider Gaussian is caught."""
    noise = ImageNoise(range(20_000), (3,), dtype=torch.float64)
    x = heun_sampler(gaussian_denoiser(MU, 1.1 * COV), noise, num_steps=64)
    with pytest.raises(AssertionError):
        assert_moments(x, MU, COV)


def test_an_image_does_not_depend_on_its_batch():
    D = gaussian_denoiser(MU, COV)
    member = SeedStreams([7]).keys("eval")
    all_at_once = sample_images(D, ImageNoise.from_keys(member, 10, (3,), dtype=torch.float64), 10,
                                num_steps=8, S_churn=5)
    in_threes = sample_images(D, ImageNoise.from_keys(member, 10, (3,), dtype=torch.float64), 3,
                              num_steps=8, S_churn=5)
    fewer = sample_images(D, ImageNoise.from_keys(member, 4, (3,), dtype=torch.float64), 4,
                          num_steps=8, S_churn=5)
    torch.testing.assert_close(all_at_once, in_threes, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(all_at_once[:4], fewer, rtol=1e-12, atol=1e-12)


MU1, S1 = torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.8], [0.8, 1.0]])
MU2, S2 = torch.tensor([0.5, -1.5]), torch.tensor([[1.0, 0.3], [0.3, 0.7]])


@pytest.mark.parametrize("interval", [(0.0, math.inf), (0.3, 3.0)])
def test_guided_heun_matches_an_independent_ode_solve(interval):
    """Heun on D = D1 + w (D1 - D2) agrees with scipy's DOP853 on dx/dsigma = (x - D(x; sigma))/sigma."""
    lo, hi = interval
    guided = SimsGuidance(gaussian_denoiser(MU1, S1), gaussian_denoiser(MU2, S2), 0.8, lo, hi)
    s_max, s_min = 20.0, 0.01
    x = heun_sampler(guided, ImageNoise(range(5), (2,), dtype=torch.float64), num_steps=256,
                     sigma_min=s_min, sigma_max=s_max)
    x0 = ImageNoise(range(5), (2,), dtype=torch.float64).randn() * s_max

    def rhs(sigma, y):
        xx = torch.as_tensor(y).reshape(1, 2)
        return ((xx - guided(xx, sigma)) / sigma).numpy().ravel()

    edges = [s_max] + [b for b in (hi, lo) if s_min < b < s_max] + [s_min]
    reference = []
    for row in x0:
        y = row.numpy()
        for a, b in zip(edges[:-1], edges[1:]):   # integrate piecewise across the interval's edges
            y = solve_ivp(rhs, (a, b), y, method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
        reference.append(guided(torch.as_tensor(y).reshape(1, 2), s_min).numpy().ravel())  # last step: sigma -> 0
    reference = np.array(reference)
    assert np.abs(x.numpy() - reference).max() < 2e-3
    unguided = heun_sampler(guided.base, ImageNoise(range(5), (2,), dtype=torch.float64), num_steps=256,
                            sigma_min=s_min, sigma_max=s_max)
    assert np.abs(unguided.numpy() - reference).max() > 0.3  # guidance matters here


def test_guidance_weights_and_interval():
    calls = []

    def base(x, s):
        return x + 1.0

    def aux(x, s):
        calls.append(s)
        return x - 1.0

    x = torch.zeros(2, 3)
    torch.testing.assert_close(SimsGuidance(base, aux, 0.5)(x, 1.0), x + 1 + 0.5 * 2)   # D_b + w (D_b - D_a)
    torch.testing.assert_close(SimsGuidance(base, aux, -1.0)(x, 1.0), x - 1)             # w = -1: D_aux alone
    calls.clear()
    windowed = SimsGuidance(base, aux, 2.0, 0.5, 2.0)
    for s in (0.1, 0.5, 1.0, 2.0, 5.0):
        windowed(x, s)
    assert calls == [0.5, 1.0, 2.0]                                                     # only inside [lo, hi]

    def boom(x, s):
        raise AssertionError("omega = 0 must not evaluate the auxiliary denoiser")
    torch.testing.assert_close(SimsGuidance(base, boom, 0.0)(x, 1.0), x + 1)


# ---------------------------------------------------------------- network and backend
def test_unet_shapes_and_named_sizes():
    net = make_unet("tiny", 8, 1)
    out = net(torch.randn(3, 1, 8, 8), torch.randn(3))
    assert out.shape == (3, 1, 8, 8)
    cifar = make_unet("ddpmpp-cifar10", 32, 3)
    assert 50e6 < sum(p.numel() for p in cifar.parameters()) < 65e6   # EDM's DDPM++ CIFAR-10 has 56 M
    with pytest.raises(ValueError):
        make_unet("medium", 6, 1)   # three levels cannot halve 6 twice


TINY = EDMConfig(net="tiny", batch_size=16, num_steps=3, ema_kimg=0.05, lr_rampup_kimg=0.01, sample_batch=8)


def tiny_backend(**kw):
    from dataclasses import replace
    return EDMBackend(replace(TINY, **kw), (1, 8, 8))


def params(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_backend_members_do_not_depend_on_their_neighbours():
    backend = tiny_backend()
    pair, alone = SeedStreams([3, 9]), SeedStreams([9])
    data = ImageTarget(load_images("digits")).sample(24, pair.keys("real"))
    m2 = backend.train(backend.init(pair.keys("init")), data, 1.0, pair.keys("train"))
    m1 = backend.train(backend.init(alone.keys("init")), data[1:], 1.0, alone.keys("train"))
    torch.testing.assert_close(params(m2.nets[1]), params(m1.nets[0]))
    torch.testing.assert_close(params(m2.emas[1]), params(m1.emas[0]))
    assert not torch.equal(params(m2.nets[0]), params(m2.nets[1]))
    x2, x1 = backend.sample(m2, 5, pair.keys("eval")), backend.sample(m1, 5, alone.keys("eval"))
    assert x2.shape == (2, 5, 1, 8, 8)
    torch.testing.assert_close(x2[1], x1[0])
    assert torch.equal(x2, to_unit(to_uint8(x2)))   # quantised to 8-bit levels, in [-1, 1]


def test_training_lowers_the_loss_and_budget_counts_images():
    backend = tiny_backend(batch_size=32, lr=3e-3)
    streams = SeedStreams([0])
    data = ImageTarget(load_images("digits")).sample(256, streams.keys("real"))
    start = backend.init(streams.keys("init"))
    trained = backend.train(start, data, 2.0, streams.keys("train"))
    assert trained.images_seen == 2 * 256 and start.images_seen == 0
    kimg = tiny_backend(budget="kimg").budget_images(0.5, 256)
    assert kimg == 500

    g = torch.Generator().manual_seed(5)
    y = data[0, :128]
    sigma = draw_sigma(torch.randn(128, generator=g), None, "edm")
    n = torch.randn(128, 1, 8, 8, generator=g)
    with torch.no_grad():
        before = denoising_loss(start.nets[0], y, sigma, n).mean()
        after = denoising_loss(trained.nets[0], y, sigma, n).mean()
    assert after < 0.8 * before


def test_omega_zero_ignores_the_guide_and_combine_is_linear(tmp_path):
    backend = tiny_backend(checkpoint_dir=str(tmp_path))
    streams = SeedStreams([1, 2])
    data = ImageTarget(load_images("digits")).sample(16, streams.keys("real"))
    base = backend.train(backend.init(streams.keys("init")), data, 1.0, streams.keys("train"))
    plain = backend.sample(base, 4, streams.keys("eval"))
    torch.testing.assert_close(backend.sample(base, 4, streams.keys("eval"), guide=object(), omega=0.0), plain)
    # parameter space: (1 + w) theta - w theta = theta; and the weights are applied member-wise
    same = backend.combine([base, base], [1.8, -0.8])
    torch.testing.assert_close(params(same.emas[0]), params(base.emas[0]), rtol=1e-5, atol=1e-6)
    half = backend.combine([base, backend.init(streams.keys("aux-init"))], [0.5, 0.5])
    init = backend.init(streams.keys("aux-init"))
    torch.testing.assert_close(params(half.nets[1]), 0.5 * params(base.nets[1]) + 0.5 * params(init.nets[1]))
    # checkpoints: train() wrote one; loading it gives the same samples
    saved = tmp_path / "edm-0001.pt"
    assert saved.is_file()
    torch.testing.assert_close(backend.sample(backend.load(saved), 4, streams.keys("eval")), plain)


# ---------------------------------------------------------------- data and the loop
def test_digits_and_npz_data(tmp_path):
    digits = load_images("digits")
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.uint8
    assert digits.images.max() == 255 and digits.labels is not None
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", x=imgs)
    loaded = load_images(str(tmp_path / "set.npz"))
    assert loaded.images.shape == (10, 3, 6, 6)
    np.testing.assert_array_equal(loaded.images[4].transpose(1, 2, 0), imgs[4])
    target = ImageTarget(loaded)
    a = target.sample(8, SeedStreams([0, 1]).keys("real"))
    b = target.sample(8, SeedStreams([1]).keys("real"))
    assert a.shape == (2, 8, 3, 6, 6) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a[1], b[0])
    assert len({tuple(r.flatten().tolist()) for r in a[0]}) == 8   # n <= M: distinct images
    with pytest.raises(ValueError):
        load_images(str(tmp_path / "missing.npz"))
    from PIL import Image
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(imgs[i]).save(folder / f"{i}.png")
    from_folder = load_images(str(folder))
    np.testing.assert_array_equal(from_folder.images, loaded.images[:3])


def tiny_run(**kw):
    options = dict(backend="edm", dataset="digits", loop="augment", gens=2, seeds=2, n_real=48,
                   n_synth=16, n_aux=16, epochs=1, aux_epochs=1, n_eval=40, edm_steps=3, edm_batch=16,
                   edm_ema_kimg=0.05, omega=0.8)
    options.update(kw)
    from madlab.runner import run_config
    return run_config(RunConfig.from_flat(**options))


def test_tiny_loop_on_digits_standard_and_sims(tmp_path, monkeypatch):
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    standard = tiny_run(algo="standard")
    sims = tiny_run(algo="sims")
    for frame in (standard, sims):
        assert sorted(frame.metric.unique()) == ["fid"]
        assert len(frame) == 2 * 2 and np.isfinite(frame.value).all() and (frame.value > 0).all()
        assert frame.groupby("generation").train_size.first().tolist() == [48, 48 + 16]
        assert (frame.backend == "edm").all() and (frame.dataset == "digits").all()
    # G^1 of SIMS is a different sampler (guided) than G^1 of standard training from the same base
    assert not np.allclose(standard[standard.generation == 1].value, sims[sims.generation == 1].value)
    # seed 1 alone reproduces seed 1 of the pair
    alone = tiny_run(algo="sims", seeds=1, first_seed=1)
    pair = sims[sims.seed == 1].sort_values("generation").value.to_numpy()
    np.testing.assert_allclose(alone.sort_values("generation").value.to_numpy(), pair, rtol=1e-6)


def test_config_rejects_bad_image_options():
    with pytest.raises(ConfigError, match="dataset"):
        RunConfig.from_flat(backend="edm", dataset="/no/such/place").validate()
    with pytest.raises(ConfigError, match="metric"):
        RunConfig.from_flat(backend="edm", metric=["fd"]).validate()
    with pytest.raises(ConfigError, match="--edm-net"):
        RunConfig.from_flat(backend="edm", edm_net="huge").validate()
    with pytest.raises(ConfigError, match="guide"):
        RunConfig.from_flat(backend="edm", guide_sigma_lo=2.0, guide_sigma_hi=1.0).validate()
    cfg = RunConfig.from_flat(backend="edm").validate()
    assert cfg.evaluation.metric == ["fid"] and cfg.edm.fid_features == "classifier"
    assert RunConfig().validate().evaluation.metric == ["w2"]
    toy = RunConfig().validate()
    assert "edm_net" not in toy.identity() and "dataset" not in toy.flat()   # toy runs carry no image options
    assert "edm" not in toy.to_dict() and "width" not in cfg.flat()          # nor image runs the toy DDPM's


def test_cli_bad_dataset_is_one_line_and_exit_2(tmp_path, capsys):
    from madlab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--backend", "edm", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "dataset" in lines[0] and not (tmp_path / "run").exists()
