"""Train an attention LSTM (or, without --attend, a vanilla LSTM) on a feature file.

Defaults are the paper's ActivityNet regime (docs/paper.md §3): momentum SGD (0.9) with the original step
rule, minibatches of 200 random 192-frame windows (flipped with probability 0.5), lr 0.01 for 2,512 updates
then ×0.9 every 125, dropout 0.5, validation every 125 updates and early stopping on the validation loss.
--preset hollywood2 switches to the fine-tuning regime (start from --init-from, multi-label loss, 2,500
updates of 100 windows, lr 0.001, momentum 0.6, decay every update after 1,000). Every flag is a field of
reproduce.training.config.TrainConfig of the same name (--input sets its input_source, --attend its
attended_source).

RUN_DIR receives config.json, log.jsonl (train and validation metrics, one JSON object per line),
last.pt and best.pt. A run stopped at any moment continues with --resume; only --iterations,
--patience and --num-workers may change on resume.

Several processes (DistributedDataParallel; gloo on CPUs, nccl with one GPU per process):
`torchrun --nproc-per-node K -m reproduce.cli train ...` (or `torchrun ... $(which alstm) train ...`).
Each process reads batch-size / K windows of every batch of --batch-size (which K must divide), so the
run computes what one process would (dropout masks aside); rank 0 writes the run folder.

examples:
  alstm train --data synth.h5 --input c3d_fc6 --attend vgg_obj_fc8 --out runs/obj_fc8
  alstm train --data synth.h5 --input c3d_fc6 --out runs/lstm --iterations 500 --validate-every 50
  alstm train --out runs/obj_fc8 --resume
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from reproduce.commands.common import chosen_device
from reproduce.runtime.precision import PRECISIONS
from reproduce.training.config import LOSSES, OPTIMIZERS, VARIANTS, TrainConfig, run_config

# Short names the design's command line uses, beside the 1:1 field flags.
_ALIASES = {"input_source": ["--input"], "attended_source": ["--attend"]}
_CHOICES = {"variant": VARIANTS, "loss": LOSSES, "optimizer": OPTIMIZERS, "precision": PRECISIONS}
_HELP = {
    "data": "feature HDF5 file (from `alstm synth`, `alstm extract` or `alstm dataset convert`)",
    "input_source": "source of the input-data v_t, e.g. c3d_fc6",
    "attended_source": "source of the attended frames a_i, e.g. vgg_obj_fc8 (omit: vanilla LSTM)",
    "multilabel": "multi-label loss; default: as the file declares",
    "flip": "read the features of flipped frames (<source>_flip); default: when the file has them for "
            "every source the run reads (otherwise the run goes on without them and says so)",
    "flip_prob": "probability that a training window is read flipped (default 0.5)",
    "precision": "float32 (default: the paper's tables), or bfloat16 / float16 (CUDA) autocast of the "
                 "forward pass with float32 weights and updates, or auto: bfloat16 on a CPU with native "
                 "bfloat16, else float32",
    "blocks_compat": "all semantics of the original Blocks model (docs/paper.md §9); implies --peepholes",
    "init_from": "checkpoint whose parameters initialise the model where names and shapes agree",
    "validate_every": "updates between validations (0: no validation, best.pt = final model)",
    "patience": "validations without improvement before stopping",
    "valid_crops": "windows (+ as many flipped) per validation video",
    "num_workers": "DataLoader worker processes reading batches",
}


def _optional_str(value: str) -> str | None:
    return None if value.lower() in ("", "none") else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder (created if missing)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--preset", choices=("activitynet", "hollywood2"), default=None,
                        help="start from this regime's defaults (flags still override them)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 ... (default: $ALSTM_DEVICE, else cuda if available)")
    parser.add_argument("--checkpoint-every", type=int, default=125, help="updates between last.pt writes")
    parser.add_argument("--log-every", type=int, default=10, help="updates between log.jsonl train records")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("configuration (fields of TrainConfig)")
    for field in dataclasses.fields(TrainConfig):
        flags = [f"--{field.name.replace('_', '-')}"] + _ALIASES.get(field.name, [])
        kwargs = {"dest": field.name, "default": argparse.SUPPRESS, "help": _HELP.get(field.name)}
        default = field.default
        if field.name in ("attended_source", "init_from"):
            kwargs.update(type=_optional_str, metavar="SOURCE" if field.name == "attended_source" else "PATH")
        elif field.name in ("multilabel", "flip") or isinstance(default, bool):
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif isinstance(default, (int, float)):
            kwargs.update(type=type(default), metavar="N" if isinstance(default, int) else "X")
        else:
            kwargs.update(type=str, choices=_CHOICES.get(field.name))
        if kwargs["help"] is None and default is not dataclasses.MISSING:
            kwargs["help"] = f"default {default}"
        group.add_argument(*flags, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig: the preset (or, with --resume, the run's config.json), then the given flags."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return run_config(given, args.out, resume=args.resume, preset=args.preset)


def _note(text: str) -> None:
    print(f"alstm train: note: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from reproduce.runtime.distributed import setup
    from reproduce.training.loop import train

    config = config_from_args(args)
    with setup(getattr(args, "torchrun", None), chosen_device(args)) as dist:   # one process or torchrun
        result = train(config, args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
                       log_every=args.log_every, progress=not args.quiet, dist=dist,
                       notice=_note)
        if not dist.is_main:
            return 0
    how = "stopped early" if result.stopped_early else "finished"
    best = (f"; best validation loss {result.best_valid_loss:.4f} at update {result.best_iteration}"
            if result.best_valid_loss is not None else "")
    print(f"{how} after {result.iterations} updates{best}; model: {result.best_checkpoint}")
    return 0

