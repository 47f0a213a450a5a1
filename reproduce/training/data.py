"""What a training run reads: the checks of its feature file, its window streams and its batches.

Every problem with the data (a missing source, an empty split, labels outside the class list, a
multilabel setting the file contradicts, videos all shorter than a window) is found by
`open_train_data`, before the first update. `window_batches` then yields batch k = start, start + 1,
... of the training stream on the run's device, read in the main process or in DataLoader workers
(batch k is a pure function of the seed and k either way, `fuel_datasets.streams.TrainWindows`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from alstm_core.storage import TARGETS
from fuel_datasets.run_inputs import check_labels, require_labels, resolve_flip
from reproduce.errors import ReproduceError
from reproduce.runtime.distributed import per_rank_batch_size
from reproduce.training.config import TrainConfig


class TrainData(NamedTuple):
    """What a run reads: the resolved config, the streams and the model's arguments."""

    config: TrainConfig           # multilabel filled in from the file
    train: Any                    # fuel_datasets.streams.TrainWindows
    valid: Any                    # TestWindows over the valid split, or None without validation
    class_names: list[str]
    model_args: dict[str, Any]    # keyword arguments of bricks.AttentionLSTM
    spec_dict: dict[str, int]
    notice: str | None = None     # one line for the user: flipped features left out for want of them


def open_train_data(config: TrainConfig, rank: int = 0, world_size: int = 1) -> TrainData:
    """Open the streams of ``config`` after checking the file; every problem is a ReproduceError or
    DatasetError raised here, before the first update: a missing source, an empty split, labels
    outside the class list, a multilabel setting the file contradicts. ``config.flip`` is resolved
    (`resolve_flip`) and ``multilabel`` taken from the file where unset. ``rank`` of ``world_size`` reads
    its B / W windows of every global batch of B (see `reproduce.runtime.distributed`)."""
    from fuel_datasets import open_dataset
    from fuel_datasets.streams import TestWindows, TrainWindows, WindowSpec

    batch_size = per_rank_batch_size(config.batch_size, world_size)
    with open_dataset(config.data) as ds:
        require_labels(ds)
        features = [s for s in ds.sources if s != TARGETS]
        read = [config.input_source] + ([config.attended_source] if config.attention else [])
        for source in read:
            if source not in ds.sources:
                raise ReproduceError(f"{config.data} has no source {source!r}; it has {', '.join(features)} "
                                     "(choose them with --input and --attend)")
        choice = resolve_flip(ds, read, config.flip)
        flip, notice = choice.flip, choice.notice(config.data, "training")
        multilabel = ds.multilabel if config.multilabel is None else config.multilabel
        if multilabel != ds.multilabel:
            raise ReproduceError(
                f"--multilabel {config.multilabel} contradicts {config.data}, whose labels are "
                f"{'multi-label' if ds.multilabel else 'single-label'}; leave it unset")
        splits = ["train"] + (["valid"] if config.validate_every else [])
        for split in splits:
            videos = ds.splits.get(split, [])
            if not videos:
                hint = " (or train without validation: --validate-every 0)" if split == "valid" else ""
                raise ReproduceError(f"the {split!r} split of {config.data} is empty{hint}")
            check_labels(ds, split, videos)
        class_names = list(ds.class_names)
        input_dim = ds.dim(config.input_source)
        attended_dim = ds.dim(config.attended_source) if config.attention else 1  # unused by the vanilla LSTM

    config = config.replace(multilabel=multilabel, flip=flip)
    spec = WindowSpec(frames=config.frames, steps=config.steps, attended_per_step=config.attended_per_step)
    train = TrainWindows(config.data, split="train", input_source=config.input_source,
                         attended_source=config.attended_source, batch_size=batch_size, spec=spec,
                         flip_prob=config.flip_prob if flip else 0.0, seed=config.seed, rank=rank,
                         world_size=world_size)
    if train.num_videos == 0:
        raise ReproduceError(f"every video of the 'train' split of {config.data} is shorter than a window of "
                             f"{config.frames} frames; use shorter windows (--frames)")
    valid = None
    if config.validate_every:
        valid = TestWindows(config.data, split="valid", input_source=config.input_source,
                            attended_source=config.attended_source, spec=spec, crops=config.valid_crops,
                            seed=config.seed, flip=flip)
    model_args = dict(input_dim=input_dim, attended_dim=attended_dim, num_classes=len(class_names),
                      hidden_dim=config.hidden_dim, match_dim=config.match_dim, variant=config.variant,
                      attention=config.attention, dropout=config.dropout,
                      peepholes=config.peepholes or config.blocks_compat, multilabel=multilabel,
                      blocks_compat=config.blocks_compat)
    spec_dict = {"frames": config.frames, "steps": config.steps,
                 "attended_per_step": config.attended_per_step}
    return TrainData(config, train, valid, class_names, model_args, spec_dict, notice)


def window_batches(data: TrainData, start: int, stop: int, num_workers: int, device: torch.device):
    """Batches k = start..stop−1 on ``device``; DataLoader workers each open their own file handle."""
    from fuel_datasets.streams import keep_batch

    if num_workers == 0:
        source = (data.train[k] for k in range(start, stop))
    else:
        source = torch.utils.data.DataLoader(
            data.train, batch_size=None, sampler=range(start, stop), num_workers=num_workers,
            collate_fn=keep_batch,
            pin_memory=device.type == "cuda", prefetch_factor=4, persistent_workers=False,
            generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
        )
    non_blocking = device.type == "cuda"

    def move(tensor):
        return None if tensor is None else tensor.to(device, non_blocking=non_blocking)

    for batch in source:
        yield move(batch.inputs), move(batch.attended), move(batch.attended_mask), move(batch.targets)
