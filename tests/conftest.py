"""Shared pytest settings and the fixtures several test modules use. Builders live in ``tests/helpers``
(importable as ``helpers``: pyproject.toml puts ``tests/`` on the path); a fixture one module alone uses
stays in that module."""

import os

import pytest

# Tests build small models; more threads than cores only adds contention on the CI's 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Commands given no --device use $ALSTM_DEVICE (read by reproduce.cli alone): the CPU here, so that
# tests comparing the commands with CPU computations hold on a machine with a GPU too. Library calls
# take their device as an argument; the tests that compare with the CPU pass device="cpu", and
# tests/reproduce/runtime/test_cuda.py names its devices itself. Subprocesses (torchrun, the CLI)
# inherit it.
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


@pytest.fixture
def small_networks(monkeypatch):
    """The CLI builds reduced-width networks (same seeds as the release builders would get)."""
    from helpers.networks import use_small_networks

    use_small_networks(monkeypatch)


@pytest.fixture(scope="module")
def clip_videos(tmp_path_factory):
    """Two lossless videos (true frames known exactly): an odd size in FFV1, H.264 (lossless RGB)."""
    from helpers.videos import moving_frames, write_video

    folder = tmp_path_factory.mktemp("videos")
    truths = {"odd": moving_frames(40, 61, 97, seed=1), "h264": moving_frames(35, 48, 64, seed=2)}
    write_video(folder / "odd.mkv", truths["odd"], "ffv1", fps=30)
    write_video(folder / "h264.mp4", truths["h264"], "h264", fps=25)
    return folder, truths


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A separable toy file (`helpers.builders.write_toy`): 4 classes, 80 train and 40 valid videos."""
    from helpers.builders import write_toy

    return write_toy(tmp_path_factory.mktemp("toy") / "toy.h5")
