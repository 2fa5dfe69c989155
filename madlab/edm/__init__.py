"""Image-scale backend: EDM (Karras et al. 2022) denoisers, Heun sampler, SIMS guidance, FID."""
