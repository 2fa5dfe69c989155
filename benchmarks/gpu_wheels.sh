#!/usr/bin/env bash
# Run HERE (a machine with PyPI), in the repository root, before the GPU check: downloads the
# Python packages the device machine lacks into .whl/ (ignored by git through info/exclude),
# for its Python 3.12 on x86-64. POT 0.9.6.post1 (1.5 MB; 0.9.7's wheel is 33 MB of the 64 MiB a
# call may carry) and torch-linear-assignment 0.1.0 (pure Python + a Triton kernel, 17 kB).
cd "$(dirname "$0")/.." || exit 1
exclude=$(git rev-parse --git-path info/exclude) && mkdir -p "$(dirname "$exclude")" &&
  { grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"; }
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl POT==0.9.6.post1 torch-linear-assignment==0.1.0
ls -l .whl
