"""Bounds on the work one command may ask for, checked in validation before anything is built or
allocated (ConfigError: one line, exit 2). Each is far beyond any run madlab was made for (the
paper's Figure 5: 100 generations, 100 epochs, 50 aux-epochs, |D_r| = 1000) and well inside what
a workstation can hold or finish; a value above one is a typo (1e308) or a unit slip."""
from __future__ import annotations

from loops.options import ConfigError

MAX_GENS = 100_000            # generations T: the rows and curves of one seed stay small
MAX_EPOCHS = 1_000_000        # epochs per generation, and SIMS's aux-epochs (budget B)
MAX_SEEDS = 1_000_000         # seeds of one configuration (~1000 tasks of the default chunk)
MAX_POINTS = 100_000_000      # points of one seed's data set (|D_r|, |D_s|, n_s, n_eval)
MAX_CHUNK_VALUES = 2 ** 31    # floats one seed chunk's largest set holds (seed_chunk x points x dim)
MAX_THREADS = 1024            # torch/OpenMP threads per process (libgomp fails far below 100 000)


def check_limits(cfg) -> None:
    """ConfigError (one line) when `cfg` asks for more than the bounds above."""
    loop, algo, ev = cfg.loop, cfg.algo, cfg.evaluation
    for flag, value, limit in (("--gens", loop.gens, MAX_GENS), ("--epochs", loop.epochs, MAX_EPOCHS),
                               ("--aux-epochs", algo.aux_epochs, MAX_EPOCHS),
                               ("--seeds", cfg.seeds, MAX_SEEDS), ("--n-real", loop.n_real, MAX_POINTS),
                               ("--n-synth", loop.n_synth, MAX_POINTS), ("--n-aux", algo.n_aux, MAX_POINTS),
                               ("--n-eval", ev.n_eval, MAX_POINTS)):
        if value > limit:
            shown = f"{value:g}" if isinstance(value, float) else f"{value:,}"
            raise ConfigError(f"{flag} {shown} is more than madlab allows ({limit:,}); a value this "
                              "large would run for ever or exhaust memory")
    points = max(loop.n_real, loop.n_synth * (loop.gens if loop.kind == "accumulate" else 1),
                 algo.n_aux, ev.n_eval)
    values = min(cfg.seed_chunk, cfg.seeds) * points
    if values > MAX_CHUNK_VALUES:
        raise ConfigError(f"one seed chunk would hold {values:,} points ({min(cfg.seed_chunk, cfg.seeds)} "
                          f"seeds x {points:,}), more than madlab allows ({MAX_CHUNK_VALUES:,}); lower "
                          "--seed-chunk or the set sizes")


def check_threads(threads: int | None, flag: str = "--threads") -> None:
    if threads is not None and threads > MAX_THREADS:
        raise ConfigError(f"{flag} {threads} is more than madlab allows ({MAX_THREADS}); use at most "
                          "the usable cores")
