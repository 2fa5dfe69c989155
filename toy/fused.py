"""The fused CPU row kernels of toy/fused_mlp.c: compiled once per machine, loaded with ctypes.

The toy DDPM's step on a CPU is bound by memory passes of LayerNorm, ReLU and the residual add,
not by its matrix products (docs/performance.md). `fused_mlp.c` does each block's
bias + time input (+ LayerNorm + affine) + ReLU (+ residual), and the thin input and output layers,
in one pass over the rows, forward and backward; the 64 x 64 matrix products stay with torch's
BLAS.

The C file is compiled with the system C compiler at first use (about a second) and cached per
machine (loops/native.py). Where no compiler works, `kernels()` returns None and the toy DDPM
runs on torch ops: the same numbers up to float rounding, about 2x slower. `MADLAB_KERNELS=torch` forces torch ops, `MADLAB_KERNELS=fused`
makes a missing compiler an error.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import warnings
from pathlib import Path

import torch

from loops import native
from toy.config import KERNEL_MODES as MODES  # auto | fused | torch, declared with the DDPM options

SOURCE = Path(__file__).with_name("fused_mlp.c")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c99"]
MAX_WIDTH = 1024  # MAXW in fused_mlp.c
MAX_OUT = 4  # MAXD in fused_mlp.c: outputs of the fused output layer

_LIB: dict[str, object] = {}


def _compile() -> Path:
    return native.build(SOURCE, FLAGS)


class Kernels:
    """ctypes wrappers of fused_mlp.c's entry points (float32, contiguous CPU tensors): each
    residual block's LayerNorm + ReLU (or, without LayerNorm, ReLU) forward and backward, the
    input and the output layer."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        L, P = ctypes.c_long, ctypes.c_void_p
        lib.fwd_ln_relu.argtypes = [L, L, L, L, P, P, P, L, P, P, P, P, P, P, P, P]
        lib.bwd_relu_ln.argtypes = [L, L, L, L, P, P, P, P, L, P, P, P, P, P, P, P, P, P, P]
        lib.fwd_out.argtypes = [L, L, L, L, P, P, P, P]
        lib.bwd_out.argtypes = [L, L, L, L, P, P, P, P, P, P]
        lib.fwd_in.argtypes = [L, L, L, L, L, P, P, P, P, L, P, P]
        lib.bwd_in.argtypes = [L, L, L, L, L, P, P, P, L, P, P, P]
        lib.fwd_relu.argtypes = [L, L, L, L, P, P, P, L, P, P, P, P]
        lib.bwd_relu.argtypes = [L, L, L, L, P, P, P, P, P, L, P, P, P]
        for f in (lib.fwd_ln_relu, lib.bwd_relu_ln, lib.fwd_in, lib.bwd_in, lib.fwd_out,
                  lib.bwd_out, lib.fwd_relu, lib.bwd_relu):
            f.restype = None
        self.lib, self.path = lib, path

    @staticmethod
    def _ptr(t: torch.Tensor | None):
        if t is None:
            return None
        if not (t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu"):
            raise ValueError("fused kernels need contiguous float32 CPU tensors")
        return t.data_ptr()

    def fwd(self, u, bias, emb, we, g, beta, out, mean_save=None, rstd_save=None,
            res_in=None, res_out=None) -> None:
        """y = relu(LayerNorm(u + bias + emb @ we) * g + beta) per row, into `out`, or
        res_out = res_in + y when res_out is given; with mean_save/rstd_save each row's
        statistics are kept for `bwd` (u must then be kept too); see fused_mlp.c."""
        S, B, W = u.shape
        E = 0 if emb is None else emb.shape[-1]
        q = self._ptr
        self.lib.fwd_ln_relu(S, B, W, E, q(u), q(bias), q(emb), 0 if emb is None else emb.shape[1],
                             q(we), q(g), q(beta), q(mean_save), q(rstd_save), q(res_in),
                             q(res_out), q(out))

    def fwd_plain(self, u, bias, emb, we, out, res_in=None, res_out=None) -> None:
        """y = relu(u + bias + emb @ we) per row (the block without LayerNorm), into `out`, or
        res_out = res_in + y when res_out is given; see fused_mlp.c."""
        S, B, W = u.shape
        E = 0 if emb is None else emb.shape[-1]
        q = self._ptr
        self.lib.fwd_relu(S, B, W, E, q(u), q(bias), q(emb), 0 if emb is None else emb.shape[1],
                          q(we), q(res_in), q(res_out), q(out))

    def bwd_plain(self, dy, y, u, bias, emb, db, dwe, dv) -> None:
        """Gradients of fwd_plain: dv = dy where the pre-activation was > 0 (read from the
        forward's output `y`, or recomputed as u + bias when y is None and there is no time
        input); db (and dwe) written. dv may be dy itself."""
        S, B, W = dy.shape
        E = 0 if emb is None else emb.shape[-1]
        q = self._ptr
        self.lib.bwd_relu(S, B, W, E, q(dy), q(y), q(u), q(bias), q(emb),
                          0 if emb is None else emb.shape[1], q(db), q(dwe), q(dv))

    def fwd_in(self, x, wx, bias, emb, we, out) -> None:
        """out = x @ wx + bias + emb @ we per row (the input layer: few inputs)."""
        S, B, D = x.shape
        q = self._ptr
        self.lib.fwd_in(S, B, out.shape[-1], D, emb.shape[-1], q(x), q(wx), q(bias), q(emb),
                        emb.shape[1], q(we), q(out))

    def bwd_in(self, dh, x, emb, dwx, db, dwe) -> None:
        """Gradients of fwd_in given dh: dwx, db, dwe written."""
        S, B, W = dh.shape
        q = self._ptr
        self.lib.bwd_in(S, B, W, x.shape[-1], emb.shape[-1], q(dh), q(x), q(emb), emb.shape[1],
                        q(dwx), q(db), q(dwe))

    def bwd(self, dy, u, bias, emb, we, mean, rstd, g, beta, dg, dbeta, db, dwe, dv) -> None:
        """Gradients of fwd from its u and saved statistics: dg, dbeta, db (and dwe) written;
        dv = d loss / d u (may be dy itself)."""
        S, B, W = dy.shape
        E = 0 if emb is None else emb.shape[-1]
        q = self._ptr
        self.lib.bwd_relu_ln(S, B, W, E, q(dy), q(u), q(bias), q(emb),
                             0 if emb is None else emb.shape[1], q(we), q(mean), q(rstd), q(g),
                             q(beta), q(dg), q(dbeta), q(db), q(dwe), q(dv))

    def fwd_out(self, h, w, bias, out) -> None:
        """out = h @ w + bias per row (the output layer: few outputs)."""
        S, B, W = h.shape
        q = self._ptr
        self.lib.fwd_out(S, B, W, out.shape[-1], q(h), q(w), q(bias), q(out))

    def bwd_out(self, dout, h, w, dh, dw, db) -> None:
        """Gradients of fwd_out given dout: dh, dw, db written."""
        S, B, W = h.shape
        q = self._ptr
        self.lib.bwd_out(S, B, W, dout.shape[-1], q(dout), q(h), q(w), q(dh), q(dw), q(db))


def mode() -> str:
    value = os.environ.get("MADLAB_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"MADLAB_KERNELS must be one of {', '.join(MODES)}, got {value!r}")
    return value


def kernels(requested: str | None = None) -> Kernels | None:
    """The loaded kernels, or None when torch ops (or torch.compile) are requested or no C
    compiler works."""
    wanted = requested or mode()
    if wanted in ("torch", "compile"):
        return None
    if "lib" not in _LIB:
        try:
            _LIB["lib"] = Kernels(_compile())
        except (OSError, subprocess.SubprocessError) as err:
            _LIB["lib"] = None
            _LIB["error"] = str(err)
            if wanted == "auto":
                warnings.warn(f"madlab: fused CPU kernels unavailable ({err}); the toy DDPM runs "
                              "on torch ops (same numbers, slower; docs/performance.md)",
                              RuntimeWarning, stacklevel=2)
    if _LIB["lib"] is None and wanted == "fused":
        raise RuntimeError(f"fused kernels requested (MADLAB_KERNELS or kernels='fused') but they "
                           f"could not be built: {_LIB['error']}")
    return _LIB["lib"]
