"""Nothing crosses between host and device inside the generation loop but the results rows
(issue 12, item 3).

On the CPU this is proved on torch's `meta` device, whose tensors have shapes but no data: the
toy-DDPM loop runs there end to end, so every operation stays on the device, and a torch-function
mode records every place that would read device data on the host (`.cpu()`, `.item()`,
`.tolist()`, `.numpy()`, `bool()` / `int()` / `float()` of a tensor, `.to("cpu")`, `nonzero`) or copy
host data to the device (`.to(device)` of a host tensor, `torch.tensor(..., device=...)`), with the
line it comes from; reads get a stand-in value so that the run goes on and every site is listed.
A host tensor that an operation mixes with device tensors fails outright on `meta`. On a GPU,
`test_cuda_loop_synchronises_only_for_results` checks the same with torch's sync debug mode (run
by the GPU check, `pytest -m cuda`).
"""
from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from loops import Loop, SeedStreams, make_algorithm
from madlab.config import RunConfig
from madlab.runner import make_evaluate
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.targets import paper_gaussian

ROOT = Path(__file__).resolve().parents[1]
READS = {"cpu", "item", "tolist", "numpy", "__array__", "__bool__", "__int__", "__float__",
         "__index__", "nonzero"}
N = 3  # seeds: a results vector has N elements

# Reads that the design allows, by (file, function name, operation):
RESULTS = {("loops/loop.py", "cpu"),                 # the [N] metric values of a generation
           ("analysis/distances.py", "cpu"),         # per_seed / wasserstein_batch return them
           ("analysis/tails.py", "cpu")}             # outlier shares; which seeds have outliers
AUCTION_SYNCS = {"analysis/assignment.py", "analysis/distances.py"}  # exact OT: data-dependent rounds
# The toy DDPM's files (toy/ddpm.py and its parts): their sites are listed here, and a new one
# fails the test. On `meta` Adam takes the unfused fallback (torch's fused kernel runs on CPU and
# CUDA only), which reads the step count; the CUDA path does not.
DDPM_FILES = {f"toy/{name}.py" for name in ("ddpm", "network", "fastpath", "training", "sampling",
                                             "guidance")}
DDPM_KNOWN = {("toy/training.py", "adam", "__float__")}


@dataclass(frozen=True)
class Event:
    direction: str   # "read" (device -> host, or a wait for the device) or "write" (host -> device)
    op: str
    file: str
    function: str
    line: int
    numel: int
    generation: int

    def where(self) -> str:
        return f"{self.file}:{self.line} {self.function}() {self.op} [{self.numel}] (generation {self.generation})"


def _site(depth: int = 2):
    """The first frame outside torch and the recorder: the code that asked for the transfer."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_code.co_filename
        mine = name == __file__ and frame.f_code.co_name in ("__torch_function__", "_record")
        if f"{os.sep}torch{os.sep}" not in name and not mine:
            break
        frame = frame.f_back
    if frame is None:
        return "?", "?", 0
    try:
        rel = str(Path(frame.f_code.co_filename).resolve().relative_to(ROOT))
    except ValueError:
        rel = frame.f_code.co_filename
    return rel, frame.f_code.co_name, frame.f_lineno


def _device_of(value):
    if isinstance(value, torch.Tensor):
        return value.device
    if isinstance(value, (str, torch.device)):
        try:
            return torch.device(value)
        except (RuntimeError, TypeError):
            return None
    return None


class HostTraffic(TorchFunctionMode):
    """Records host <-> device traffic of non-CPU tensors; on `meta` answers reads with zeros."""

    def __init__(self):
        super().__init__()
        self.events: list[Event] = []
        self.generation = 1

    def _record(self, direction, op, numel):
        file, function, line = _site(3)
        self.events.append(Event(direction, op, file, function, line, int(numel), self.generation))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        first = args[0] if args else None
        on_device = isinstance(first, torch.Tensor) and first.device.type != "cpu"
        if name == "to" or name == "cuda":
            targets = [d for d in map(_device_of, list(args[1:]) + list(kwargs.values())) if d]
            target = torch.device("cuda") if name == "cuda" else (targets[0] if targets else None)
            if target is not None and isinstance(first, torch.Tensor):
                if on_device and target.type == "cpu":
                    name = "cpu"            # a read, handled below
                elif not on_device and target.type != "cpu":
                    self._record("write", f"to({target.type})", first.numel())
        if name in ("tensor", "as_tensor") and not isinstance(first, torch.Tensor):
            device = _device_of(kwargs.get("device"))
            if device is not None and device.type != "cpu":
                self._record("write", name, torch.as_tensor(first).numel())
        if name in READS and on_device:
            self._record("read", name, first.numel())
            if first.device.type == "meta":
                return self._stand_in(name, first)
        return func(*args, **kwargs)

    @staticmethod
    def _stand_in(name, t):
        zeros = torch.zeros(t.shape, dtype=t.dtype)
        if name == "cpu":
            return zeros
        if name == "nonzero":
            return torch.zeros(0, t.dim(), dtype=torch.long, device=t.device)
        if name in ("numpy", "__array__"):
            return zeros.numpy()
        if name == "tolist":
            return zeros.tolist()
        return {"__bool__": False, "__int__": 1, "__index__": 1}.get(name, 1.0)


def run_on_meta(metric: str, kind: str = "augment", algo: str = "sims", gens: int = 3):
    """A tiny toy-DDPM loop on `meta`, evaluated by madlab.runner's evaluate; its traffic."""
    backend = ToyDDPM(DDPMConfig(T=4, width=8, depth=1, device="meta"), dim=2)
    target = paper_gaussian()
    loop = Loop(kind=kind, algorithm=make_algorithm(algo, epochs=2, omega=1.5, n_aux=16, aux_epochs=1),
                backend=backend, target=target, n_real=20, n_synth=8, generations=gens, n_eval=12)
    streams = SeedStreams(range(N), device="meta")
    cfg = RunConfig.from_flat(metric=[metric], n_eval=12)
    evaluate = make_evaluate(cfg, target, streams)
    watch = HostTraffic()
    records = []
    with watch:
        for record in loop.run(streams, evaluate):
            records.append(record)
            watch.generation = record.generation + 1
    assert [r.generation for r in records] == list(range(1, gens + 1))
    assert all(v.shape == (N,) and v.device.type == "cpu" for r in records for v in r.metrics.values())
    return watch.events


def check(events, allow_syncs=()):
    """The rule, as failures (strings): reads are [N] results or allowed syncs; writes only small
    constants, copied once in generation 1; the toy DDPM only at its known sites."""
    bad = []
    for e in events:
        if e.file in DDPM_FILES:
            if (e.file, e.function, e.op) not in DDPM_KNOWN:
                bad.append("toy DDPM (new site): " + e.where())
        elif e.direction == "read":
            results = (e.file, e.op) in RESULTS and e.numel <= N
            sync = e.file in allow_syncs and e.op in ("nonzero", "__bool__")
            if not (results or sync):
                bad.append(e.where())
        elif e.generation > 1 or e.numel > 64:
            bad.append(e.where())
    return bad


@pytest.mark.parametrize("kind", ["augment", "fresh", "accumulate"])
def test_fd_loop_reads_back_only_the_results(kind):
    events = run_on_meta("fd", kind=kind)
    assert not check(events), "\n".join(check(events))
    results = [e for e in events if e.direction == "read" and e.file not in DDPM_FILES]
    # per generation, [N] each: fd, the outlier share, and which seeds have outliers (fd_inlier
    # reuses fd where none; here none, the stand-in reads are zeros)
    assert len(results) == 3 * 3 and all(e.numel == N for e in results)
    writes = [e for e in events if e.direction == "write"]
    assert all(e.generation == 1 for e in writes)                          # the target's constants, once


def test_w2_by_the_device_auction_reads_back_only_results_and_round_counts(monkeypatch):
    """MADLAB_OT=auction is the CUDA path of `per_seed`: the samples stay on the device; the
    auction waits for the device once or twice per bidding round (how many rows are still
    free: `nonzero`), by design (docs/performance.md)."""
    monkeypatch.setenv("MADLAB_OT", "auction")
    events = run_on_meta("w2", algo="standard")
    assert not check(events, AUCTION_SYNCS), "\n".join(check(events, AUCTION_SYNCS))
    assert not [e for e in events if e.op in ("numpy", "__array__", "tolist")]


def test_the_checker_sees_a_host_round_trip():
    """A planted transfer is caught with its line: the checker is not vacuous."""
    watch = HostTraffic()
    x = torch.zeros(5, 2, device="meta")
    with watch:
        y = x.cpu() * 2
        torch.ones(4).to("meta")
        float(x.sum())
    ops = [(e.direction, e.op, e.numel) for e in watch.events]
    assert ops == [("read", "cpu", 10), ("write", "to(meta)", 4), ("read", "__float__", 1)]
    assert watch.events[0].file == "tests/test_transfers.py" and y.shape == (5, 2)
    assert check([Event("read", "cpu", "analysis/distances.py", "per_seed", 1, 2000, 2)])


# ----------------------------------------------------------------------------- on a GPU
def _repo_frame(stack):
    for frame in reversed(stack):
        path = Path(frame.filename).resolve()
        if ROOT in path.parents and path.name != Path(__file__).name:
            return str(path.relative_to(ROOT)), frame.name, frame.lineno
    return "?", "?", 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU check)")
@pytest.mark.parametrize("metric", ["fd", "w2"])
def test_cuda_loop_synchronises_only_for_results(metric, monkeypatch):
    """torch.cuda.set_sync_debug_mode('warn') flags every operation that makes the host wait for
    the GPU (reads, blocking copies to it, linalg error checks): in a toy-DDPM loop on CUDA, the
    toy DDPM included, the only ones are the results and, for w2, the auction's rounds."""
    monkeypatch.setenv("MADLAB_OT", "auction")
    backend = ToyDDPM(DDPMConfig(T=4, width=8, depth=1, device="cuda"), dim=2)
    target = paper_gaussian()
    loop = Loop(kind="augment", algorithm=make_algorithm("sims", epochs=2, omega=1.5, n_aux=16,
                                                         aux_epochs=1),
                backend=backend, target=target, n_real=20, n_synth=8, generations=3, n_eval=12)
    streams = SeedStreams(range(N), device="cuda")
    evaluate = make_evaluate(RunConfig.from_flat(metric=[metric], n_eval=12), target, streams)
    list(loop.run(streams, evaluate, keep_models=False))   # warm-up: lazy inits, first copies
    sites = []

    def hook(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            sites.append(_repo_frame(traceback.extract_stack()[:-1]))

    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = hook
        torch.cuda.set_sync_debug_mode("warn")
        try:
            list(loop.run(streams, evaluate))
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    allowed_files = {"loops/loop.py", "analysis/distances.py"}
    if metric == "w2":
        allowed_files |= AUCTION_SYNCS
    unexpected = sorted({s for s in sites if s[0] not in allowed_files})
    assert not unexpected, f"host synchronisations in the generation loop: {unexpected}"


# ------------------------------------------------------------------ the cuda marker is complete
def test_every_test_that_needs_cuda_carries_the_cuda_marker():
    """`pytest -m cuda` (the GPU check) must select every CUDA-only test: a test skipped without
    CUDA carries @pytest.mark.cuda."""
    import ast
    missing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        skip_names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                      and "cuda.is_available" in ast.unparse(node.value)
                      for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
                continue
            decorators = [ast.unparse(d) for d in node.decorator_list]
            needs = any("cuda.is_available" in d or d in skip_names for d in decorators)
            if needs and "pytest.mark.cuda" not in decorators:
                missing.append(f"{path.name}::{node.name}")
    assert not missing, f"CUDA-only tests without @pytest.mark.cuda: {missing}"
