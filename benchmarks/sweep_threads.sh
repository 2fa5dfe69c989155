#!/bin/bash
# Sweep executor: N processes x 1 torch thread (madlab's default) vs 1 process x N threads, side
# by side on the same 8-task toy-DDPM sweep, alternated REPS times. Prints wall seconds of each.
#   bash benchmarks/sweep_threads.sh [N=2] [REPS=2]
# Measured on the shared 2-core CI box (load 6-10 from other jobs): --jobs 2 --threads 1 took
# 77.8 s and 22.8 s, --jobs 1 --threads 2 took 804.6 s and 126.9 s (5.6x-10x slower).
N=${1:-2}; REPS=${2:-2}
ARGS="sweep --backend toy-ddpm --gens 3 --seeds 16 --seed-chunk 8 --epochs 5 --aux-epochs 2 --n-real 200 --n-eval 200 --n-aux 200 --omega 0,3 --n-synth 50,100 --quiet"
OUT=$(mktemp -d)
for rep in $(seq "$REPS"); do
  for mode in "--jobs $N --threads 1" "--jobs 1 --threads $N"; do
    d="$OUT/$rep-$(echo "$mode" | tr -d ' -')"
    s=$(date +%s.%N); madlab $ARGS $mode --out "$d" > /dev/null; e=$(date +%s.%N)
    echo "rep $rep $mode: $(echo "$e - $s" | bc) s"
  done
done
rm -rf "$OUT"
