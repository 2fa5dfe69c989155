"""The names of the distances madlab measures, torch-free (the CLI lists them at start-up).

A new sample-based metric adds its name here (and whether it needs a fresh real sample) and its
code in `analysis.distances.per_seed`; `madlab run --metric` and the results table follow.
"""
METRICS = ("w2", "w1", "fd")                              # vector data (analysis.distances)
NEEDS_REAL_SAMPLE = {"w2": True, "w1": True, "fd": False}
IMAGE_METRICS = ("fid", "w2", "w1")                       # the edm backend (w1/w2: exact OT on pixels)
