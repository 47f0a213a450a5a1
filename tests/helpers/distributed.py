"""torchrun on loopback and the settings of the multi-process tests (gloo on the CPU, nccl on GPUs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

TORCHRUN = Path(sys.executable).with_name("torchrun")
# Loss curves of 2 processes vs 1: the same arithmetic up to the order of float32 sums.
LOSS_TOLERANCE = 1e-5

TINY = dict(num_classes=4, num_videos=24, min_frames=48, max_frames=96, latent_dim=8, c3d_fc6_dim=16,
            c3d_fc8_dim=4, vgg_fc6_dim=12, vgg_obj_fc8_dim=10, vgg_sce_fc8_dim=6, vgg_act_fc8_dim=6)
FLAGS = dict(input_source="c3d_fc6", attended_source="vgg_obj_fc8", hidden_dim=16, match_dim=8, frames=48,
             steps=3, batch_size=8, validate_every=3, valid_crops=1, lr=0.05, lr_fixed_iterations=3,
             lr_decay_every=2, lr_decay_ratio=0.9, dropout=0.0, seed=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 -m reproduce.cli ARGV`` on loopback; a non-zero exit fails the test."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [str(TORCHRUN), "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "reproduce.cli", *map(str, argv)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def flags(**changes) -> list[str]:
    out = []
    for name, value in {**FLAGS, **changes}.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def records(run_dir, kind):
    with open(Path(run_dir) / "log.jsonl", encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]
