"""Shared pytest settings. Fixtures live in the test modules that use them."""

import os

import pytest

# Tests build small models; more threads than cores only adds contention on the CI's 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Commands given no --device use $ALSTM_DEVICE (read by reproduce.cli alone): the CPU here, so that
# tests comparing the commands with CPU computations hold on a machine with a GPU too. Library calls
# take their device as an argument; the tests that compare with the CPU pass device="cpu", and
# tests/test_cuda.py names its devices itself. Subprocesses (torchrun, the CLI) inherit it.
os.environ.setdefault("ALSTM_DEVICE", "cpu")


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread avoids OpenMP spin-waits on a shared 2-core machine (~100x slower),
    and makes float sums add up in one order. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
