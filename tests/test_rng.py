"""The per-seed streams: Philox4x32-10 against Random123's known answers, the C kernel against the
torch ops bit for bit, key derivation, and the distribution of the numbers (fixed keys: the
statistics below are deterministic)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from loops import philox
from loops.rng import SeedStreams, StreamKeys, derive_keys

# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),   # digits of pi
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]
KINDS = {philox.UNIFORM32: "float32 uniform", philox.NORMAL32: "float32 normal",
         philox.UNIFORM64: "float64 uniform", philox.NORMAL64: "float64 normal"}
needs_c = pytest.mark.skipif(philox.kernel() is None, reason="no C compiler: torch ops only")
KEYS = torch.tensor([0, -1, 1, 2 ** 63 - 1, -(2 ** 63), 0x243F6A8885A308D3, -987654321],
                    dtype=torch.int64)


def test_philox_in_torch_ops_gives_random123s_known_answers():
    ctr = torch.tensor([c for c, _, _ in KAT], dtype=torch.int64).T
    key = torch.tensor([k for _, k, _ in KAT], dtype=torch.int64).T
    out = torch.stack(philox.philox4x32_10(tuple(ctr), tuple(key)), dim=1)
    assert out.tolist() == [list(o) for _, _, o in KAT]


@needs_c
def test_philox_in_c_gives_random123s_known_answers():
    ctr = np.array([c for c, _, _ in KAT], dtype=np.uint32)
    key = np.array([k for _, k, _ in KAT], dtype=np.uint32)
    out = np.zeros_like(ctr)
    philox.kernel().philox4x32_10(len(KAT), ctr.ctypes.data, key.ctypes.data, out.ctypes.data)
    assert out.tolist() == [list(o) for _, _, o in KAT]


def test_a_block_is_philox_of_position_kind_and_key():
    """The documented layout: uniform32 number p of key k is word p % 4 of
    Philox((p // 4 mod 2^32, p // 4 div 2^32, kind 0, 0), (k low, k high)), top 24 bits."""
    key = 0x0123456789ABCDEF
    p = 4 * (2 ** 32 + 5) + 2                          # a block index above 2^32: both words
    got = philox.draw_torch(torch.tensor([key]), philox.UNIFORM32, p, 1)[0, 0]
    words = philox.philox4x32_10((5, 1, 0, 0), (key & 0xFFFFFFFF, key >> 32))
    assert got.item() == (int(words[2]) >> 8) * 2.0 ** -24


@needs_c
@pytest.mark.parametrize("kind", list(KINDS))
def test_c_kernel_and_torch_ops_give_the_same_bits(kind):
    """The CPU kernel against the torch ops that other devices run: bit for bit, at offsets that
    start and end inside a block and inside a vector of blocks, and beyond 2^32 blocks."""
    for offset, count in ((0, 20_000), (3, 77), (1001, 5), (4 * 2 ** 32 - 6, 300), (0, 1)):
        a = philox.draw_torch(KEYS, kind, offset, count)
        b = philox.draw_native(KEYS, kind, offset, count)
        assert a.dtype == b.dtype and torch.equal(a, b), (KINDS[kind], offset, count)


def test_torch_ops_take_over_when_kernels_are_forced_off(monkeypatch):
    keys = SeedStreams([1, 2]).keys("eval")
    native = keys.randn((5, 3))
    monkeypatch.setenv("MADLAB_KERNELS", "torch")
    assert philox.kernel() is None
    assert torch.equal(keys.randn((5, 3)), native)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU check)")
@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda_gives_the_cpu_bits(kind):
    a = philox.draw(KEYS, kind, 7, 100_003)
    b = philox.draw(KEYS.cuda(), kind, 7, 100_003).cpu()
    assert torch.equal(a, b), (KINDS[kind], (a != b).sum().item())


def test_box_muller_pieces_are_accurate():
    """The library-free sqrt(-2 ln u), sqrt, cos and sin against libm's float64 functions: within
    3 ulp (measured: 2.1 ulp at most)."""
    u = torch.rand(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = torch.cat([u.clamp(min=2.0 ** -53), 1 - u[:2000] * 1e-6,
                   torch.tensor([2.0 ** -53, 2.0 ** -32, 0.5, 1 - 2.0 ** -53]).double()])
    exact = torch.tensor([math.sqrt(-2 * math.log(x)) for x in u.tolist()], dtype=torch.float64)
    assert ((philox.radius(u) - exact).abs() <= 6.7e-16 * exact).all()
    assert philox.radius(torch.tensor([1.0], dtype=torch.float64)).item() == 0.0
    x = torch.cat([u * 80, torch.tensor([1e-300, 4.0, 2.0], dtype=torch.float64)])
    exact = torch.tensor([math.sqrt(v) for v in x.tolist()], dtype=torch.float64)
    assert ((philox.root(x) - exact).abs() <= 6.7e-16 * exact).all()
    assert philox.root(torch.zeros(1, dtype=torch.float64)).item() == 0.0
    for bits in (32, 53):
        v = torch.randint(0, 2 ** bits, (100_000,), generator=torch.Generator().manual_seed(1))
        v = torch.cat([v, torch.arange(8) << (bits - 3), (torch.arange(8) + 1 << (bits - 3)) - 1])
        c, s = philox.cos_sin(v, bits)
        angle = 2 * math.pi * v.double() / 2 ** bits
        assert (c - torch.cos(angle)).abs().max() < 1e-15
        assert (s - torch.sin(angle)).abs().max() < 1e-15


def test_fold_and_split_hash_keys_as_seedstreams_does():
    """StreamKeys.fold (torch int64 ops, on the keys' device) is the numpy SplitMix64 derivation
    with more parts; split(n) folds with 0 .. n - 1."""
    seeds = [0, 3, 2 ** 40, 2 ** 63 + 5]
    keys = SeedStreams(seeds).keys("train", 7, 2)
    seeds = np.array(seeds, dtype=np.uint64)
    assert keys.keys.tolist() == derive_keys(seeds, 2, 7, 2).view(np.int64).tolist()   # "train" = 2
    want = derive_keys(seeds, 2, 7, 2, 11, 4).view(np.int64)
    assert keys.fold(11, 4).keys.tolist() == want.tolist()
    children = keys.split(3)
    assert len(children) == 12
    assert children.keys[4].item() == keys[1].fold(1).keys.item()   # seed 1, child 1
    assert children[5].keys.item() == keys[1].fold(2).keys.item()


def test_streams_of_purposes_kinds_and_seeds_differ():
    s = SeedStreams([0, 1])
    a, b = s.keys("train", 1), s.keys("train", 2)
    assert not torch.equal(a.randn(100), b.randn(100))
    assert not torch.equal(a.randn(100)[0], a.randn(100)[1])
    u, z = a.rand(400), a.randn(400)       # same key, different kinds: unrelated numbers
    assert abs(np.corrcoef(u[0].numpy(), z[0].numpy())[0, 1]) < 0.15


def test_stream_keys_index_like_the_seeds():
    keys = SeedStreams(range(10, 20)).keys("eval")
    z = keys.randn((6,))
    assert len(keys) == 10 and len(keys[3]) == 1 and len(keys[2:5]) == 3
    assert torch.equal(keys[[7, 1]].randn((6,)), z[[7, 1]])
    assert torch.equal(keys[-1].randn((6,))[0], z[-1])
    assert torch.equal(keys[torch.tensor([0, 9])].rand(2), keys.rand(2)[[0, 9]])
    assert keys.int_seeds()[0] == (keys.keys[0].item() & (2 ** 64 - 1)) >> 1
    g = keys.cpu_generators()
    assert len(g) == 10 and g[0].initial_seed() == keys.int_seeds()[0]
    with pytest.raises(ValueError, match="float32 or float64"):
        keys.randn(3, dtype=torch.float16)
    assert keys.randn((0, 4)).shape == (10, 0, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normals_are_standard_normal(dtype):
    z = SeedStreams(range(4)).keys("experiment").randn(500_000, dtype=dtype).double()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z.flatten().numpy())) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z.flatten().numpy())) < 5 * math.sqrt(24 / n)
    for row in z:
        assert stats.kstest(row.numpy(), "norm").pvalue > 1e-3
    # the two normals of one Box-Muller pair, and neighbouring seeds, are uncorrelated
    pairs = z[0].view(-1, 2)
    pair_corr = np.corrcoef(pairs[:, 0].numpy(), pairs[:, 1].numpy())[0, 1]
    assert abs(pair_corr) < 5 / math.sqrt(len(pairs))
    assert abs(np.corrcoef(z[0].numpy(), z[1].numpy())[0, 1]) < 5 / math.sqrt(z.shape[1])
    # tails: P(|z| > 4) = 6.3e-5
    assert (z.abs() > 4).double().mean().item() == pytest.approx(6.334e-5, rel=0.25)
    bound = 6.67 if dtype == torch.float32 else 8.58
    assert z.abs().max().item() < bound


@pytest.mark.parametrize("dtype,bits", [(torch.float32, 24), (torch.float64, 53)])
def test_uniforms_are_uniform_on_the_half_open_interval(dtype, bits):
    u = SeedStreams(range(4)).keys("experiment").rand(500_000, dtype=dtype).double()
    n = u.numel()
    assert 0 <= u.min().item() and u.max().item() < 1
    assert torch.equal(u * 2 ** bits, (u * 2 ** bits).floor())    # multiples of 2^-bits
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    for row in u:
        assert stats.kstest(row.numpy(), "uniform").pvalue > 1e-3
    counts = np.histogram(u.flatten().numpy(), bins=64, range=(0, 1))[0]
    assert stats.chisquare(counts).pvalue > 1e-3


def test_stream_keys_reject_what_they_cannot_hold():
    with pytest.raises(ValueError, match="1-d int64"):
        StreamKeys(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="non-negative"):
        SeedStreams([1]).keys("eval").randn(3, offset=-1)


def test_draws_happen_on_the_keys_device_without_the_host(monkeypatch):
    """Keys on another device (torch's "meta" device stands in for a GPU here) draw there, through
    torch ops: the C kernel is never called and no number is made on the host; the targets'
    real samples come out on that device too."""
    from toy.targets import paper_gaussian, two_mode_mixture

    def host(*args):
        raise AssertionError("drawn on the host")
    monkeypatch.setattr(philox, "draw_native", host)
    streams = SeedStreams([1, 2], device="meta")
    keys = streams.keys("train", 4)
    assert keys.device.type == "meta" and keys.fold(3).device.type == "meta"
    for draw in (keys.randn, keys.rand):
        for dtype in (torch.float32, torch.float64):
            x = draw((3, 5), offset=7, dtype=dtype)
            assert x.device.type == "meta" and x.shape == (2, 3, 5) and x.dtype == dtype
    assert paper_gaussian().sample(10, streams.keys("real")).device.type == "meta"
    assert two_mode_mixture().sample(10, streams.keys("real")).device.type == "meta"
