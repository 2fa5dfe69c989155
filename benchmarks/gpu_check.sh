#!/usr/bin/env bash
# The GPU check on the device machine (issue 12, item 4); benchmarks/gpu_check/__init__.py's
# docstring says how the lead calls it. No network there: the wheels that benchmarks/gpu_wheels.sh fetched
# here travel in .whl/ (carry [".whl"]) and go to /tmp/site; madlab itself runs from the
# checkout through PYTHONPATH (`pip install -e .` would need PyPI for setuptools and POT).
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || echo "gpu_check.sh: installing .whl/ failed; going on without"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "gpu_check.sh: no .whl/ (POT, torch-linear-assignment): their comparisons are skipped"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec python3 -m benchmarks gpu_check --out "${OUT:?set OUT to the output folder}" "$@"
