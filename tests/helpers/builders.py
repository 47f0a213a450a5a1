"""Tiny inputs for training, evaluation and the command line: generated feature files, configurations
and flags, a separable toy file, a small file of our layout; and a probe of the model's dropout."""

from __future__ import annotations

import numpy as np

from fuel_datasets import FeatureWriter
from fuel_datasets.synthetic import SynthConfig, write_synthetic
from reproduce.training.config import TrainConfig

TINY = dict(num_classes=4, num_videos=40, min_frames=48, max_frames=96, latent_dim=8, c3d_fc6_dim=16,
            c3d_fc8_dim=4, vgg_fc6_dim=12, vgg_obj_fc8_dim=10, vgg_sce_fc8_dim=6, vgg_act_fc8_dim=6)

# `alstm train` / `alstm evaluate` flags of tiny_config's model and windows
TINY_FLAGS = ["--input", "c3d_fc6", "--attend", "vgg_obj_fc8", "--hidden-dim", "8", "--match-dim", "6",
              "--frames", "48", "--steps", "3", "--batch-size", "6", "--valid-crops", "1", "--quiet"]


def write_synth(path, **overrides):
    """A small generated feature file (the `alstm synth` generator, tiny dimensions)."""
    write_synthetic(path, SynthConfig(**{**TINY, **overrides}))
    return path


def tiny_config(data, **changes):
    """Windows of 48 frames (N = T = 3), small model, validation every 4 updates."""
    base = dict(data=str(data), input_source="c3d_fc6", attended_source="vgg_obj_fc8", hidden_dim=8,
                match_dim=6, frames=48, steps=3, batch_size=6, iterations=8, validate_every=4, valid_crops=1,
                lr=0.05, lr_fixed_iterations=3, lr_decay_every=2, lr_decay_ratio=0.5, seed=3)
    return TrainConfig(**{**base, **changes})


TOY_CLASSES, TOY_INPUT_DIM, TOY_ATTENDED_DIM = 4, 12, 10     # classes, input and attended feature widths


def write_toy(path):
    """Class c adds 3 to input dimension c and 1.5 to attended dimension c, in every row, under unit
    noise: separable from any one window, at chance for a model that does not learn. (Over seeds 1-3
    the runs of tests/suites/test_learning.py end at a training loss of 0.03-0.62 from 1.34-1.40,
    validation accuracy 0.95-1.)"""
    C, DV, DA = TOY_CLASSES, TOY_INPUT_DIM, TOY_ATTENDED_DIM
    rng = np.random.default_rng(0)
    with FeatureWriter(path, class_names=[f"c{k}" for k in range(C)]) as writer:
        for v in range(120):
            label, chunks = v % C, 8                                  # 128 frames: 5 windows of 48
            inputs = rng.normal(size=(chunks, DV)).astype(np.float32)
            attended = rng.normal(size=(2 * chunks, DA)).astype(np.float32)
            inputs[:, label] += 3.0
            attended[:, label] += 1.5
            split = "train" if v < 80 else "valid"
            writer.add_video(f"v{v:03d}", {"c3d": inputs, "vgg": attended},
                             {"c3d": 16 * np.arange(chunks), "vgg": 8 * np.arange(2 * chunks)},
                             16 * chunks, 30.0, targets=label, split=split)
    return path


def write_ours(path, videos=4):
    """A small file of our layout: one source c3d_fc6 of 3 columns, two classes, clip0 in test."""
    with FeatureWriter(path, class_names=["run", "jump"], attrs={"generator": "cli-test"}) as writer:
        writer.set_source_info("c3d_fc6", network="C3D", layer="fc6-1", chunk_length=16, stride=16)
        for v in range(videos):
            rows = 12 + v
            writer.add_video(f"clip{v}", {"c3d_fc6": np.full((rows, 3), v, np.float32)},
                             {"c3d_fc6": 16 * np.arange(rows)}, 16 * rows, 24.0, targets=v % 2,
                             split="test" if v == 0 else "train")
    return path


def capture_dropout(model):
    """Hooks that record each StepDropout's mask (output / input) by site name."""
    masks = {}

    def hook(name):
        def record(module, args, output):
            masks[name] = (output / args[0]).detach().numpy()
        return record

    for name, module in model.named_children():
        if name.endswith("_dropout"):
            module.register_forward_hook(hook(name))
    return masks
