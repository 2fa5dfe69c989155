"""Shared fixtures: tiny, fast configurations of the toy world."""
import pytest
import torch

from toy.ddpm import DDPMConfig


@pytest.fixture
def tiny_ddpm() -> DDPMConfig:
    """A toy DDPM small enough to train in a fraction of a second per call."""
    return DDPMConfig(T=10, width=16, depth=1, batch_size=32)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
