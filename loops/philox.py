"""Philox4x32-10 and its uniform and normal numbers for many keys at once, on any device.

Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the Random123 library) maps a 128-bit counter and a 64-bit key to four 32-bit words by
ten rounds of two 32 x 32 -> 64-bit products, xors and a key bump. It is counter-based: any number
of a stream is computed directly from (key, position), with no state to carry, so N seeds' streams
are one vectorized evaluation and a draw cut into pieces gives exactly the numbers of the whole.

Layout (shared with philox.c, which is the CPU kernel). Stream = (key, kind); block b of it is the
Philox output of the counter (b mod 2^32, b div 2^32, kind, 0). Number p of a draw comes from
block p // PER[kind]:

    kind 0  float32 uniform on [0, 1): (w >> 8) 2^-24 (exactly representable); 4 per block
    kind 1  float32 normal: Box-Muller on the pairs (w0, w1), (w2, w3), computed in float64 from
            u1 = 1 - w0 2^-32 in (0, 1] and u2 = w1 2^-32, then rounded; |z| <= 6.66; 4 per block
    kind 2  float64 uniform: 53 bits, ((w0 >> 5) 2^26 + (w1 >> 6)) 2^-53; 2 per block
    kind 3  float64 normal: Box-Muller on two 53-bit uniforms; |z| <= 8.57; 2 per block

**CPU and CUDA give the same bits.** The integer part is exact everywhere (uint32 arithmetic
emulated in int64: a 32 x 32-bit product fits in 64 bits, its high and low words are taken by
shift and mask, and int64 multiplication wraps on every torch device). Box-Muller needs ln, sqrt,
cos and sin, whose library versions differ between glibc, MKL / Sleef (torch's CPU kernels) and
CUDA's libdevice by an ulp here and there (torch's CPU float64 sqrt is not even correctly rounded:
1.3 % of inputs are an ulp off), so none is used: the range reductions are exact bit operations
(frexp, octants of the 32- or 53-bit integer) and the rest is polynomials and Newton steps in a
fixed order of float64 +, -, * and /, each of which IEEE 754 rounds correctly, hence identically,
on every device. torch runs each operation as its own kernel (nothing can be fused into a
multiply-add), philox.c is compiled with -ffp-contract=off, and the float32 numbers are those
float64 values rounded to nearest. So the CPU kernel, torch ops on the CPU and torch ops on CUDA
agree bit for bit, with no exception. tests/test_rng.py checks the C kernel against the torch ops
on the CPU, and CUDA against the CPU where a GPU is present (not yet run on one). Do not
torch.compile these functions: a compiler may fuse a * b + c into one rounding.

Accuracy: the series are truncated below 2^-56 relative; ln, sqrt, cos and sin come out within
2.1 ulp of libm's (tests/test_rng.py), so a float32 normal is the correctly rounded Box-Muller
value except where that lies within a few float64 ulp of a float32 rounding boundary (about one
number in 10^8, then one float32 ulp away, the same on every device).
"""
from __future__ import annotations

import ctypes
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from loops import native

MASK32 = 0xFFFFFFFF
PHILOX_M = (0xD2511F53, 0xCD9E8D57)   # round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)   # key bumps (golden ratio, sqrt(3) - 1)
ROUNDS = 10

UNIFORM32, NORMAL32, UNIFORM64, NORMAL64 = range(4)
PER = (4, 4, 2, 2)  # numbers per Philox block, by kind

PI4 = math.pi / 4
LN2 = math.log(2.0)
SQRT_HALF = math.sqrt(0.5)
LOG_C = [2 / (2 * k + 1) for k in range(1, 12)]                     # ln m = 2 atanh(s)
SIN_C = [(-1) ** k / math.factorial(2 * k + 1) for k in range(1, 9)]  # sin th = th + th z P(z)
COS_C = [(-1) ** k / math.factorial(2 * k) for k in range(1, 9)]      # cos th = 1 + z Q(z)


def philox4x32_10(ctr, key):
    """Philox4x32-10 in torch integer ops. ctr: four int64 tensors (or ints) holding uint32
    values, key: two; they broadcast against each other. Returns the four output words."""
    x0, x1, x2, x3 = ctr
    k0, k1 = key
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        p0, p1 = x0 * PHILOX_M[0], x2 * PHILOX_M[1]   # < 2^64: wraps into int64's sign bit
        x0, x1, x2, x3 = ((p1 >> 32) & MASK32) ^ x1 ^ k0, p1 & MASK32, \
            ((p0 >> 32) & MASK32) ^ x3 ^ k1, p0 & MASK32
    return x0, x1, x2, x3


def _horner(z: torch.Tensor, coefficients) -> torch.Tensor:
    """c[0] + z (c[1] + z (... + z c[-1])), one rounding per operation, innermost first."""
    out = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = z * out + c
    return out


ROOT_GUESS = (1.8507, -1.1174, 0.2794)  # 1/sqrt(m) on [1/2, 2) to 3.7 %: c0 + m (c1 + m c2)


def root(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x) for float64 x >= 0 by multiplications and additions only (philox.c `root`):
    x = m 2^e with e even, four Newton steps for 1/sqrt(m) from a quadratic guess, then
    m (1/sqrt(m)) 2^(e/2). Not torch.sqrt: on the CPU that is MKL's or Sleef's, which is not
    correctly rounded (1.3 % of float64 inputs differ by an ulp from IEEE's sqrt), so it would
    not give CUDA's bits."""
    m, e = torch.frexp(x)                      # m in [1/2, 1)
    odd = (e & 1).bool()
    m = torch.where(odd, m * 2.0, m)
    e = e.to(torch.int64) - odd.to(torch.int64)
    h = m * 0.5
    r = (m * ROOT_GUESS[2] + ROOT_GUESS[1]) * m + ROOT_GUESS[0]
    for _ in range(4):
        r = r * (1.5 - h * (r * r))
    scale = ((e // 2 + 1023) << 52).view(torch.float64)   # 2^(e/2), exact
    return torch.where(x == 0, 0.0, (m * r) * scale)


def radius(u: torch.Tensor) -> torch.Tensor:
    """sqrt(-2 ln u) for float64 u in (0, 1] (philox.c `radius`, the same operations)."""
    m, e = torch.frexp(u)                     # u = m 2^e, m in [1/2, 1): exact
    low = m < SQRT_HALF
    m = torch.where(low, m * 2.0, m)
    e = e.to(torch.float64) - low.to(torch.float64)
    f = m - 1.0
    s = f / (f + 2.0)
    z = s * s
    lnm = s * 2.0 + s * (z * _horner(z, LOG_C))
    return root((e * LN2 + lnm) * -2.0)


def cos_sin(v: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi v 2^-bits for int64 v in [0, 2^bits) (philox.c `cos_sin`)."""
    sh = bits - 3
    o, r = v >> sh, v & ((1 << sh) - 1)                  # octant, position inside it
    t = torch.where((o & 1).bool(), (1 << sh) - r, r)    # odd octants: measured from their end
    th = t.to(torch.float64) * (PI4 / 2 ** sh)           # in [0, pi/4]
    z = th * th
    S = th + th * (z * _horner(z, SIN_C))
    C = z * _horner(z, COS_C) + 1.0
    swap = (((o + 1) >> 1) & 1).bool()
    cv, sv = torch.where(swap, S, C), torch.where(swap, C, S)
    return (torch.where((((o + 2) >> 2) & 1).bool(), -cv, cv),
            torch.where(((o >> 2) & 1).bool(), -sv, sv))


def _bits53(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a >> 5) << 26) | (b >> 6)


def numbers(kind: int, w) -> torch.Tensor:
    """The numbers of blocks with words w = (w0, w1, w2, w3), each [..., B]: [..., B PER[kind]]."""
    w0, w1, w2, w3 = w
    if kind == UNIFORM32:
        v = [(x >> 8).to(torch.float32) * 2.0 ** -24 for x in w]
    elif kind == NORMAL32:
        r0 = radius((2 ** 32 - w0).to(torch.float64) * 2.0 ** -32)
        r1 = radius((2 ** 32 - w2).to(torch.float64) * 2.0 ** -32)
        (c0, s0), (c1, s1) = cos_sin(w1, 32), cos_sin(w3, 32)
        v = [(r0 * c0).float(), (r0 * s0).float(), (r1 * c1).float(), (r1 * s1).float()]
    elif kind == UNIFORM64:
        v = [_bits53(w0, w1).to(torch.float64) * 2.0 ** -53,
             _bits53(w2, w3).to(torch.float64) * 2.0 ** -53]
    else:
        r = radius((2 ** 53 - _bits53(w0, w1)).to(torch.float64) * 2.0 ** -53)
        c, s = cos_sin(_bits53(w2, w3), 53)
        v = [r * c, r * s]
    return torch.stack(v, dim=-1).flatten(-2)


def draw_torch(keys: torch.Tensor, kind: int, offset: int, count: int) -> torch.Tensor:
    """[N, count]: numbers offset .. offset + count - 1 of stream (keys[k], kind), in torch ops on
    the keys' device (int64 [N], each the bits of a 64-bit key)."""
    dtype = torch.float32 if kind in (UNIFORM32, NORMAL32) else torch.float64
    if count == 0:
        return torch.empty(len(keys), 0, dtype=dtype, device=keys.device)
    per = PER[kind]
    first, last = offset // per, (offset + count - 1) // per
    blocks = torch.arange(first, last + 1, dtype=torch.int64, device=keys.device)
    zero = torch.zeros((), dtype=torch.int64, device=keys.device)
    ctr = (blocks & MASK32, blocks >> 32, zero + kind, zero)
    key = ((keys & MASK32).unsqueeze(-1), ((keys >> 32) & MASK32).unsqueeze(-1))
    out = numbers(kind, philox4x32_10(ctr, key))
    start = offset - first * per
    return out[:, start:start + count]


# ----------------------------------------------------------------------- the C kernel (CPU)
SOURCE = Path(__file__).with_name("philox.c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared",
         "-std=c99"]
MIN_SEEDS_PER_THREAD = 8
_LIB: dict[str, object] = {}


def kernel():
    """philox.c loaded, or None (no C compiler, or MADLAB_KERNELS=torch): torch ops, same bits."""
    if os.environ.get("MADLAB_KERNELS", "").strip().lower() == "torch":
        return None
    if "lib" not in _LIB:
        try:
            lib = ctypes.CDLL(str(native.build(SOURCE, FLAGS)))
            L, P = ctypes.c_long, ctypes.c_void_p
            lib.philox_draw.argtypes = [L, P, L, ctypes.c_int64, L, P]
            lib.philox4x32_10.argtypes = [L, P, P, P]
            lib.philox_draw.restype = lib.philox4x32_10.restype = None
            _LIB["lib"] = lib
        except OSError as err:
            _LIB["lib"] = None
            warnings.warn(f"madlab: C random-number kernel unavailable ({err}); drawing with torch "
                          "ops (same numbers, slower)", RuntimeWarning, stacklevel=2)
    return _LIB["lib"]


def draw_native(keys: torch.Tensor, kind: int, offset: int, count: int) -> torch.Tensor:
    """draw_torch's numbers from philox.c (CPU keys), the seeds split over torch's threads when
    there are enough of them (ctypes releases the GIL)."""
    lib = kernel()
    keys = keys.contiguous()
    n = len(keys)
    dtype = torch.float32 if kind in (UNIFORM32, NORMAL32) else torch.float64
    out = torch.empty(n, count, dtype=dtype)
    row = count * out.element_size()

    def rows(lo: int, hi: int) -> None:
        lib.philox_draw(hi - lo, keys.data_ptr() + 8 * lo, kind, offset, count,
                        out.data_ptr() + row * lo)
    threads = min(torch.get_num_threads(), n // MIN_SEEDS_PER_THREAD)
    if threads <= 1 or count == 0:
        rows(0, n)
        return out
    if _LIB.get("pool_key") != (os.getpid(), threads):  # one pool per process and size
        _LIB.update(pool_key=(os.getpid(), threads), pool=ThreadPoolExecutor(threads))
    step = -(-n // threads)
    list(_LIB["pool"].map(lambda lo: rows(lo, min(lo + step, n)), range(0, n, step)))
    return out


def draw(keys: torch.Tensor, kind: int, offset: int, count: int) -> torch.Tensor:
    """[N, count] numbers of kind `kind` from position `offset` of each key's stream, on the keys'
    device: philox.c on the CPU where it compiles, torch ops elsewhere (the same bits)."""
    if offset < 0 or count < 0:
        raise ValueError(f"offset and count must be non-negative, got {offset}, {count}")
    if keys.device.type == "cpu" and kernel() is not None:
        return draw_native(keys, kind, offset, count)
    return draw_torch(keys, kind, offset, count)
