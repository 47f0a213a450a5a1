"""`alstm finetune c3d | vgg | mean` (reproduce/commands/finetune.py): a solver.prototxt, --resume, one-line
errors, --help, and the batch shared by two torchrun processes."""

import json

import numpy as np
import pytest
import torch
from helpers.caffe_files import C3D_CONVOLUTION3D, V1_INNER_PRODUCT, net_bytes
from helpers.distributed import torchrun
from helpers.networks import small_c3d
from helpers.videos import moving_frames, write_video

from caffe_models.preprocess import C3D_RESIZE
from caffe_models.writer import save_mean
from reproduce.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
SOLVER = """# C3D v1.0 style
net: "c3d_finetuning.prototxt"
base_lr: 0.0001
lr_policy: "step"
gamma: 0.1
stepsize: 2
max_iter: 4
momentum: 0.9
weight_decay: 0.0005
snapshot: 2
snapshot_prefix: "c3d_cli"
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    lines = []
    for i in range(4):
        write_video(root / f"{i}.mkv", moving_frames(20, 24, 32, seed=i), "ffv1")
        lines.append(f"{root}/{i}.mkv {i} {i % 2}\n")
    (root / "train.lst").write_text("".join(lines))
    (root / "solver.prototxt").write_text(SOLVER)
    save_mean(np.full((3, 16, *C3D_RESIZE), 110, np.float32), root / "mean.binaryproto")
    names = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    net = small_c3d(1, 487)
    layers = [(names.get(n, n), C3D_CONVOLUTION3D if n[:4] == "conv" else V1_INNER_PRODUCT,
               [p.detach().numpy() for p in ps]) for n, ps in net.caffe_parameters().items()]
    (root / "sports1m").write_bytes(net_bytes(layers, schema="c3d"))
    return root


def c3d_args(root, out, *more):
    return ["finetune", "c3d", "--list", str(root / "train.lst"), "--weights", str(root / "sports1m"),
            "--mean", str(root / "mean.binaryproto"), "--solver", str(root / "solver.prototxt"), "--out",
            str(out), "--batch-size", "2", "--fc-dim", "16", "--workers", "0", "--quiet", *map(str, more)]


def test_c3d_with_a_solver_file_and_resume(inputs, tmp_path, capsys):
    assert main(c3d_args(inputs, tmp_path / "run")) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "net is ignored" in captured.err
    assert f"fine-tuned C3D to update 4: {tmp_path / 'run' / 'c3d_cli_iter_4.caffemodel'}" in captured.out
    assert sorted(p.name for p in (tmp_path / "run").glob("*.caffemodel")) == ["c3d_cli_iter_2.caffemodel",
                                                                                "c3d_cli_iter_4.caffemodel"]
    rates = [r["lr"] for r in map(json.loads, open(tmp_path / "run" / "log.jsonl"))]
    # C3D v1.0's counter is one ahead: the drop of stepsize 2 comes at the second update
    assert rates == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6], rel=1e-6)
    assert main(c3d_args(inputs, tmp_path / "run")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(c3d_args(inputs, tmp_path / "run", "--resume")) == 0          # already done: nothing to do
    assert "update 4" in capsys.readouterr().out


def test_one_line_errors(inputs, tmp_path, capsys):
    for argv, message in (
            (["finetune", "c3d", "--weights", "w", "--mean", "m", "--out", str(tmp_path)],
             "give --data DATASET.h5 with --videos DIR, or --list TRAIN.lst"),
            (c3d_args(inputs, tmp_path / "x") + ["--weights", str(tmp_path / "none")],
             "none: cannot be read (No such file or directory)"),
            (["finetune", "vgg", "--images", str(tmp_path / "none.txt"), "--weights", "w", "--out",
              str(tmp_path)], "cannot be read")):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "warning:" not in line]
        assert len(err) == 1 and message in err[0] and err[0].startswith("alstm finetune: error: "), err


def test_help_names_the_three_jobs(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    assert "compute_volume_mean_from_list" in out and "reproduce.finetune_c3d" in out and "--resume" in out


def test_two_processes_share_each_batch(inputs, tmp_path):
    done = torchrun(*c3d_args(inputs, tmp_path / "ddp", "--device", "cpu"))
    assert done.stdout.count("fine-tuned C3D to update 4") == 1                 # rank 0 reports
    state = torch.load(tmp_path / "ddp" / "finetune_state.pt", weights_only=False)
    assert state["iteration"] == 4 and len(state["rng"]["dropout_by_rank"]) == 2
    assert all(torch.isfinite(v).all() for v in state["net"].values())
    records = [json.loads(x) for x in open(tmp_path / "ddp" / "log.jsonl")]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
