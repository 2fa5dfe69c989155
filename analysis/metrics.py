"""The names of the distances madlab measures, torch-free (the CLI lists them at start-up).

A new sample-based metric adds its name here (and whether it needs a fresh real sample) and its
code in `analysis.distances.per_seed`; `madlab run --metric` and the results table follow.

Tail diagnostics (analysis/tails.py, vector targets only) are metrics too, one results row each:

    outlier_share   fraction of the model's samples beyond Mahalanobis radius 5 under p_r
                    (p_r's own share: 3.7e-6 in 2-D, analysis.tails.own_rate)
    w2_inlier, ...  the distance m on the samples within that radius (and the real points within it)

By default every run records them beside its chosen distances (`recorded`; `--no-tails` turns
that off); naming them in `--metric` records them alone.
"""
OUTLIER_RADIUS = 5.0    # Mahalanobis radius beyond which a sample is an outlier (analysis.tails)
METRICS = ("w2", "w1", "fd")                              # vector data (analysis.distances)
OUTLIER_SHARE = "outlier_share"
INLIER = {m: f"{m}_inlier" for m in METRICS}              # w2 -> w2_inlier: m on inliers only
TAIL_METRICS = (OUTLIER_SHARE, *INLIER.values())
VECTOR_METRICS = METRICS + TAIL_METRICS                   # what --metric accepts for vector data
NEEDS_REAL_SAMPLE = {"w2": True, "w1": True, "fd": False,
                     OUTLIER_SHARE: False, "w2_inlier": True, "w1_inlier": True, "fd_inlier": False}
IMAGE_METRICS = ("fid", "w2", "w1")
# Derived in analysis (analysis.mad.with_squares), never recorded: the square of each seed's W2,
# the number POT's emd2 returns with a squared-Euclidean cost and many papers call "the
# Wasserstein distance". Its ratios use the same per-seed rows as W2's.
SQUARED = {"w2": "w2sq", "w2_inlier": "w2sq_inlier"}
LABELS = {"w2": "W2", "w2sq": "W2²", "w2_inlier": "W2 inliers", "w2sq_inlier": "W2² inliers",
          "w1": "W1", "fd": "fd", "fd_inlier": "fd inliers", "fid": "FID",
          OUTLIER_SHARE: "outlier share"}                       # the edm backend (w1/w2: exact OT on pixels)


def base_metric(name: str) -> str | None:
    """The distance an inlier metric restricts (w2_inlier -> w2); None for any other name."""
    return next((m for m, inl in INLIER.items() if inl == name), None)


def recorded(chosen, tails: bool) -> list[str]:
    """The metrics a vector-data run records: the chosen ones, then (with `tails`) the outlier
    share and each chosen distance on inliers, without repeats, in that order."""
    names = list(chosen)
    if tails:
        names += [OUTLIER_SHARE] + [INLIER[m] for m in chosen if m in INLIER]
    return list(dict.fromkeys(names))
