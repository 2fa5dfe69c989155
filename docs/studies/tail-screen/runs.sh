#!/bin/bash
# Tail screen at a million samples (docs/studies/tail-screen/README.md): generation 1 only, no loop ratio.
# Each configuration is one `madlab run --gens 1`: 64 seeds x 16 000 evaluation samples = 1.024 M
# samples, enough to resolve an outlier share near p_r's own 3.7e-6 (3.8 expected beyond
# Mahalanobis radius 5; 7.6 at twice the rate). fd is the distance (exact W2 at 16 000 points would
# cost minutes per seed). Every learner is named explicitly, so a later change of the default
# changes no row. Resumable: a configuration whose results exist is skipped.
#   bash docs/studies/tail-screen/runs.sh [OUT=runs/tail1]   then   python docs/studies/tail-screen/summary.py runs/tail1
set -u
OUT=${1:-runs/tail1}
fd() { name=$1; first=$2; shift 2; [ -f "$OUT/$name/results.parquet" ] && return
       madlab run --gens 1 --seeds 64 --first-seed "$first" --n-eval 16000 --metric fd --algo sims \
           --quiet --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 && echo "done $name"; }
w2() { name=$1; shift; [ -f "$OUT/$name/results.parquet" ] && return
       madlab run --gens 1 --seeds 64 --first-seed 30000 --metric w2 --algo sims \
           --quiet --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 && echo "done $name"; }
mkdir -p "$OUT"
SIN="--learner resmlp-sin"; SILU="--learner resmlp-silu"
# the exact learner (closed-form Gaussian fit): what finite data allow
fd gauss-w0 20000 --backend gaussian --omega 0
fd gauss-w3 20000 --backend gaussian --omega 3
# resmlp-sin, the default: base, SIMS, and the SIMS knobs at omega = 3
fd w0 20000 $SIN --omega 0
fd w1 20000 $SIN --omega 1
fd default 20000 $SIN --omega 3
fd tall 20000 $SIN --omega 3 --guide-t-max 40
fd tmax10 20000 $SIN --omega 3 --guide-t-max 10
fd tmax5 20000 $SIN --omega 3 --guide-t-max 5
fd tmin5 20000 $SIN --omega 3 --guide-t-min 5
fd posterior 20000 $SIN --omega 3 --variance posterior
fd continue 20000 $SIN --omega 3 --finetune continue
fd B20 20000 $SIN --omega 3 --aux-epochs 20
fd B100 20000 $SIN --omega 3 --aux-epochs 100
# learner variants, base model (omega = 0)
fd w0-silu 20000 $SIN --omega 0 --activation silu
fd w0-gelu 20000 $SIN --omega 0 --activation gelu
fd w0-tanh 20000 $SIN --omega 0 --activation tanh
fd w0-width128 20000 $SIN --omega 0 --width 128
fd w0-depth3 20000 $SIN --omega 0 --depth 3
fd w0-T100 20000 $SIN --omega 0 --T 100
fd w0-posterior 20000 $SIN --omega 0 --variance posterior
fd w0-b256 20000 $SIN --omega 0 --batch-size 256
fd w0-b128 20000 $SIN --omega 0 --batch-size 128 --lr 1e-3
fd w0-lr1e-3 20000 $SIN --omega 0 --lr 1e-3
fd w0-constlr 20000 $SIN --omega 0 --lr-schedule constant
fd w0-scaled 20000 $SIN --omega 0 --time-embedding scaled
fd w0-ln 20000 --learner resmlp-ln --omega 0
fd w0-td 20000 --learner toy-diffusion --omega 0
# the smooth activations under guidance
fd silu-w1 20000 $SILU --omega 1
fd silu-w3 20000 $SILU --omega 3
fd silu-w3-tall 20000 $SILU --omega 3 --guide-t-max 40
fd silu-w3-tmax10 20000 $SILU --omega 3 --guide-t-max 10
fd gelu-w3 20000 $SIN --omega 3 --activation gelu
# held-out seeds (30000..30063) for the finalists
fd relu-w0-held 30000 $SIN --omega 0
fd silu-w0-held 30000 $SILU --omega 0
fd relu-w3-held 30000 $SIN --omega 3
fd silu-w3-held 30000 $SILU --omega 3
fd relu-w3-tmax10-held 30000 $SIN --omega 3 --guide-t-max 10
fd silu-w3-tmax10-held 30000 $SILU --omega 3 --guide-t-max 10
# bulk quality: exact W2 at 1000 points on the held-out seeds
w2 w2-relu-w0 $SIN --omega 0
w2 w2-silu-w0 $SILU --omega 0
w2 w2-relu-w3 $SIN --omega 3
w2 w2-silu-w3 $SILU --omega 3
w2 w2-silu-w3-tmax10 $SILU --omega 3 --guide-t-max 10
# the flagship loop (augment, |D_s| = 250, omega = 3, 12 generations), powered: 64 seeds x 16 000
# samples per generation on seeds 40000..40063; and as the issue states it, 8 unused seeds x 1000
loop() { name=$1; shift; [ -f "$OUT/$name/results.parquet" ] && return
         madlab run --loop augment --algo sims --omega 3 --gens 12 --quiet --out "$OUT/$name" "$@" \
             > "$OUT/$name.log" 2>&1 && echo "done $name"; }
loop loop-silu-q $SILU --guide-t-max 10 --seeds 64 --first-seed 40000 --n-eval 16000 --metric fd
loop loop-sin $SIN --seeds 64 --first-seed 40000 --n-eval 16000 --metric fd
loop flag-silu-q $SILU --guide-t-max 10 --seeds 8 --first-seed 9200
loop flag-sin $SIN --seeds 8 --first-seed 9200
