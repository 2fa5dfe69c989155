"""`madlab run`: one configuration, all its seeds, a run directory and a summary table."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table
from typing_extensions import Annotated

from analysis.summary import run_summary
from loops.algorithms import ALGORITHMS
from loops.kinds import LOOP_KINDS
from madlab.config import BACKENDS, RunConfig
from madlab.commands.sweep import run_with_progress
from madlab.executors import LocalExecutor
from madlab.runner import check_environment
from madlab.store import check_run_dir, load_results, read_failure, write_config
from madlab.sweep import SweepSpec, chunk_tasks, needs_merge, normalized, open_sweep, states
from toy.targets import TARGETS

D = RunConfig()  # defaults shown in --help come from the config itself
LoopKind = Enum("LoopKind", {k: k for k in LOOP_KINDS}, type=str)
Algo = Enum("Algo", {k: k for k in ALGORITHMS}, type=str)
BackendName = Enum("BackendName", {k: k for k in BACKENDS}, type=str)
TargetName = Enum("TargetName", {k: k for k in TARGETS}, type=str)

LOOP = "Loop"
DDPM = "Toy DDPM (--backend toy-ddpm)"
GAUSS = "Gaussian fit (--backend gaussian)"
IMAGE = "EDM images (--backend edm)"
EVAL = "Evaluation and output"

stderr = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("seed-generations"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=stderr, transient=False)


def print_summary(frame, out: Path) -> None:
    table = Table(title=f"madlab run {out}")
    for col in ("metric", "seeds", "E[dist(G^1)]", "gen", "E[dist(G^T)]", "ratio G^T/G^1"):
        table.add_column(escape(col), justify="right")
    for row in run_summary(frame).itertuples():
        table.add_row(row.metric, str(row.seeds), f"{row.first:.4f} ± {row.first_se:.4f}",
                      str(row.last_generation), f"{row.last:.4f} ± {row.last_se:.4f}",
                      f"{row.ratio:.3f}")
    Console().print(table)
    Console().print(f"results: pandas.read_parquet('{out / 'results.parquet'}')  (± is one standard error over seeds)")


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        loop: Annotated[LoopKind, typer.Option(help="Loop kind: D^t = D_s^{t-1} (fully-synthetic), D_r ∪ D_s^{t-1} (augment), D_r^t ∪ D_s^{t-1} (fresh), D_r ∪ D_s^1..D_s^{t-1} (accumulate).", rich_help_panel=LOOP)] = D.loop,
        algo: Annotated[Algo, typer.Option(help="Training algorithm A(.): standard (Alg. 2), sims (Alg. 1, score-space guidance, Eq. 5), sims-param (parameter space, Eq. 6).", rich_help_panel=LOOP)] = D.algo,
        omega: Annotated[float, typer.Option(help="SIMS guidance weight w: s = (1+w) s_base - w s_aux. 0 is standard training, -1 samples the auxiliary model.", rich_help_panel=LOOP)] = D.omega,
        gens: Annotated[int, typer.Option(help="Generations of the loop.", rich_help_panel=LOOP)] = D.gens,
        seeds: Annotated[int, typer.Option(help="Independent runs, trained together as one tensor.", rich_help_panel=LOOP)] = D.seeds,
        first_seed: Annotated[int, typer.Option(help="Seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1; seed k's numbers do not depend on the others.", rich_help_panel=LOOP)] = D.first_seed,
        n_real: Annotated[int, typer.Option(help="|D_r|, real points per seed.", rich_help_panel=LOOP)] = D.n_real,
        n_synth: Annotated[int, typer.Option(help="|D_s|, synthetic points each generation hands on.", rich_help_panel=LOOP)] = D.n_synth,
        n_aux: Annotated[int, typer.Option(help="SIMS n_s: self-samples the auxiliary model is fine-tuned on.", rich_help_panel=LOOP)] = D.n_aux,
        aux_epochs: Annotated[float, typer.Option(help="SIMS budget B: epochs of fine-tuning the auxiliary model on its n_s samples.", rich_help_panel=LOOP)] = D.aux_epochs,
        epochs: Annotated[float, typer.Option(help="Epochs of training per generation.", rich_help_panel=LOOP)] = D.epochs,
        warm_start: Annotated[bool, typer.Option("--warm-start/--from-scratch", help="Start generation t from G^{t-1}'s weights, or from a fresh initialisation.", rich_help_panel=LOOP)] = D.warm_start,
        backend: Annotated[BackendName, typer.Option(help="Model family: toy-ddpm (vectorized DDPM), gaussian (closed-form fit, classic MAD analytics) or edm (image diffusion, Karras et al. 2022, on --dataset).", rich_help_panel=LOOP)] = D.backend,
        target: Annotated[TargetName, typer.Option(help="p_r: gaussian2d = N(0, [[2,1],[1,2]]) as in the paper; mixture2d = two modes at (±3, 0).", rich_help_panel=LOOP)] = D.target,
        T: Annotated[int, typer.Option("--T", help="Diffusion steps.", rich_help_panel=DDPM)] = D.T,
        schedule: Annotated[str, typer.Option(help="Noise schedule: cosine | linear.", rich_help_panel=DDPM)] = D.schedule,
        width: Annotated[int, typer.Option(help="Hidden units of the MLP.", rich_help_panel=DDPM)] = D.width,
        depth: Annotated[int, typer.Option(help="Residual blocks of the MLP.", rich_help_panel=DDPM)] = D.depth,
        time_embedding: Annotated[str, typer.Option(help="Time input: scaled (t/T) | raw (t) | sinusoidal.", rich_help_panel=DDPM)] = D.time_embedding,
        layer_norm: Annotated[bool, typer.Option("--layer-norm/--no-layer-norm", help="LayerNorm inside the blocks.", rich_help_panel=DDPM)] = D.layer_norm,
        activation: Annotated[str, typer.Option(help="relu | silu | gelu | tanh.", rich_help_panel=DDPM)] = D.activation,
        batch_size: Annotated[int, typer.Option(help="Minibatch size.", rich_help_panel=DDPM)] = D.batch_size,
        lr: Annotated[float, typer.Option(help="Adam learning rate (the auxiliary model uses the same).", rich_help_panel=DDPM)] = D.lr,
        lr_schedule: Annotated[str, typer.Option(help="linear (decay to lr*lr_end_factor over each training call) | constant.", rich_help_panel=DDPM)] = D.lr_schedule,
        lr_end_factor: Annotated[float, typer.Option(help="Final learning-rate factor of the linear schedule.", rich_help_panel=DDPM)] = D.lr_end_factor,
        variance: Annotated[str, typer.Option(help="Sampler variance: beta (sigma_t^2 = beta_t) | posterior (beta-tilde_t).", rich_help_panel=DDPM)] = D.variance,
        estimator: Annotated[str, typer.Option(help="mle (divide by n) | unbiased (n-1).", rich_help_panel=GAUSS)] = D.estimator,
        sampling_bias: Annotated[float, typer.Option(help="lambda: sample N(mu, lambda Sigma); < 1 is mode-seeking.", rich_help_panel=GAUSS)] = D.sampling_bias,
        dataset: Annotated[str, typer.Option(help="p_r for --backend edm: digits (scikit-learn's bundled 8x8 digits), a .npz of uint8 images, or a folder of images. Read from disk only, never downloaded.", rich_help_panel=IMAGE)] = D.dataset,
        edm_net: Annotated[str, typer.Option(help="U-Net size: tiny (CPU tests) | small (CPU demo) | medium (GPU minutes) | ddpmpp-cifar10 (EDM's CIFAR-10 DDPM++).", rich_help_panel=IMAGE)] = D.edm_net,
        edm_precond: Annotated[str, typer.Option(help="Preconditioning and loss of Karras et al. 2022, Table 1: edm | vp.", rich_help_panel=IMAGE)] = D.edm_precond,
        edm_budget: Annotated[str, typer.Option(help="Unit of --epochs and --aux-epochs: epochs (passes over D^t or S) | kimg (thousands of images seen, the paper's unit).", rich_help_panel=IMAGE)] = D.edm_budget,
        edm_batch: Annotated[int, typer.Option(help="Images per training step and seed.", rich_help_panel=IMAGE)] = D.edm_batch,
        edm_lr: Annotated[float, typer.Option(help="Adam learning rate (warm-up over the first kimg of each training call).", rich_help_panel=IMAGE)] = D.edm_lr,
        edm_ema_kimg: Annotated[float, typer.Option(help="EMA half-life in thousands of images; samples come from the EMA weights. 0 = no EMA.", rich_help_panel=IMAGE)] = D.edm_ema_kimg,
        edm_steps: Annotated[int, typer.Option(help="Heun sampler steps N (2N-1 network evaluations, twice that with SIMS guidance).", rich_help_panel=IMAGE)] = D.edm_steps,
        edm_churn: Annotated[float, typer.Option(help="S_churn of the sampler (0 = deterministic probability-flow ODE).", rich_help_panel=IMAGE)] = D.edm_churn,
        guide_sigma_lo: Annotated[float, typer.Option(help="SIMS guidance acts only for noise levels sigma >= this.", rich_help_panel=IMAGE)] = D.guide_sigma_lo,
        guide_sigma_hi: Annotated[float, typer.Option(help="SIMS guidance acts only for noise levels sigma <= this (inf = no bound).", rich_help_panel=IMAGE)] = D.guide_sigma_hi,
        fid_features: Annotated[str, typer.Option(help="FID features: auto (classifier for digits, inception otherwise) | classifier (small MLP trained on the data set's labels, CPU) | pixels | inception (needs madlab[fid] or --fid-weights).", rich_help_panel=IMAGE)] = D.fid_features,
        fid_weights: Annotated[str, typer.Option(help="Inception-v3 TorchScript file for --fid-features inception [default: the one madlab[fid] installs].", rich_help_panel=IMAGE)] = D.fid_weights,
        edm_checkpoints: Annotated[str, typer.Option(help="Folder to save every trained ensemble in (edm-0001.pt, ...); empty = none.", rich_help_panel=IMAGE)] = D.edm_checkpoints,
        metric: Annotated[str, typer.Option(help="dist(G^t, p_r), one or several comma-separated: w2 / w1 (exact OT against N_EVAL fresh real points), fd (Frechet distance to the true mean and covariance), fid (--backend edm: Frechet distance of features to the whole data set's). Default: w2, or fid for --backend edm.", rich_help_panel=EVAL)] = ",".join(D.metric),
        n_eval: Annotated[int, typer.Option(help="Model samples per seed per generation used to measure the distance (and real samples, for w1/w2).", rich_help_panel=EVAL)] = D.n_eval,
        device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N.", rich_help_panel=EVAL)] = D.device,
        seed_chunk: Annotated[int, typer.Option(help="Most seeds trained together in one tensor (memory knob; numbers do not change).", rich_help_panel=EVAL)] = D.seed_chunk,
        out: Annotated[Optional[Path], typer.Option(help="Run directory [default: runs/<loop>-<algo>-<run id>]. Rerunning the same command reuses it; a different run there is refused.", rich_help_panel=EVAL)] = None,
        progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show a progress bar on stderr.", rich_help_panel=EVAL)] = True,
    ) -> None:
        """Run one self-consuming loop for SEEDS independent seeds and summarise E[dist(G^t, p_r)].

        Example (the paper's section 4.2.1 toy, SIMS at w = 3):
        madlab run --loop augment --algo sims --omega 3 --gens 100
        """
        values = {k: v for k, v in locals().items() if k not in ("out", "progress")}
        values = {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items()}
        cfg = normalized(RunConfig(**values).validate())   # every field its declared type: stable run id
        check_environment()
        out_dir = out or Path("runs") / f"{cfg.loop}-{cfg.algo}-{cfg.run_id()}"
        # the run directory is a one-configuration sweep (madlab.sweep): tasks = chunks of seeds
        check_run_dir(out_dir, cfg)          # a different run there: one line, exit 2, nothing written
        spec = SweepSpec(name=out_dir.name, base=cfg.to_dict())
        tasks = open_sweep(out_dir, spec, chunk_tasks(cfg), kind="run")
        if all(s == "done" for s in states(out_dir, tasks).values()) and not needs_merge(out_dir, tasks):
            stderr.print(f"{out_dir} already holds this run's results; nothing to redo.")
            print_summary(load_results(out_dir), out_dir)
            return
        write_config(out_dir, cfg)
        label = f"{cfg.loop}/{cfg.algo} w={cfg.omega:g}"
        counts = run_with_progress(out_dir, tasks, LocalExecutor(jobs=1, threads=0), label, progress)
        if counts["failed"]:
            errors = [f["error"] for t in tasks if (f := read_failure(out_dir, t.id))]
            stderr.print(f"madlab: run failed: {errors[0] if errors else 'unknown error'}", markup=False)
            raise typer.Exit(1)
        print_summary(load_results(out_dir), out_dir)
