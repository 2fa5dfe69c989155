"""Shared fixtures: tiny, fast configurations of the toy world."""
import pytest
import torch

from toy.ddpm import DDPMConfig


@pytest.fixture
def tiny_ddpm() -> DDPMConfig:
    """A toy DDPM small enough to train in a fraction of a second per call."""
    return DDPMConfig(T=10, width=16, depth=1, batch_size=32,
                      guide_t_max=10)  # SIMS guidance on the whole chain (Eq. 5 exactly: omega = -1 is the guide)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: intra-op threads only add contention (measured 20x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
