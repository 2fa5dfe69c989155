"""The SIMS paper's Figure 5 (section 4.2.1): its setting, its published numbers, and the report's
defaults taken from it. Plain constants (no numpy), so the command line reads them at start-up."""

PAPER_START = 20                      # E[dist(G^inf)] = mean over t = 20..100 in the paper
TOLERANCE = 0.05                      # rho <= 1.05 counts as prevented (paper: 1.013 at 250 prevents, 1.078 at 500 does not)
DRIFT_TOLERANCE = 0.10                # still rising by more than 0.1 x m_1 across the window: MAD
LEVEL = 0.95                          # confidence level of every band
N_BOOT = 1000                         # bootstrap resamples of the seeds
BOOT_SEED = 0                         # bootstrap generator seed: reports are reproducible

# the published Figure 5 numbers, |D_s| -> ratio; they apply to runs in the paper's setting only
PAPER_STANDARD = {125: 1.71, 250: 2.46, 500: 3.99, 1000: 6.69}
PAPER_SIMS_BEST = {125: 0.996, 250: 1.013, 500: 1.078, 1000: 1.204}
PAPER_THRESHOLD = 250
PAPER_SETTING = {"loop": "augment", "target": "gaussian2d", "backend": "toy-ddpm"}  # results columns
