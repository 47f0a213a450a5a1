"""Flags that more than one command defines the same way (a helper of the commands, not a command)."""

from __future__ import annotations

import argparse

from fuel_datasets.errors import DatasetError
from reproduce.runtime.precision import PRECISIONS


def add_network_arguments(group: argparse._ArgumentGroup) -> None:
    """--precision and --clip-batch of the commands that run C3D and VGG-19 on videos."""
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="precision of the feature networks (auto: bfloat16 autocast on a CPU with native "
                       "bfloat16, float16 on CUDA, each kept only if the first batch stays within 1%% of "
                       "float32; float32 elsewhere); printed, and recorded with the outputs")
    group.add_argument("--clip-batch", type=int, default=None,
                       help="16-frame clips per network call (default: cpu 4, cuda 32)")


def chosen_device(args: argparse.Namespace) -> str | None:
    """The device the user chose: ``--device``, else ``$ALSTM_DEVICE`` (which `reproduce.cli` puts on
    ``args.default_device``); None leaves the choice to the library (cuda where available, else cpu;
    `reproduce.runtime.distributed.default_device` turns it into a name)."""
    return getattr(args, "device", None) or getattr(args, "default_device", None)


def parse_pairs(values: list[str] | None, what: str, convert=str) -> dict:
    """{NAME: VALUE} of repeated ``NAME=VALUE`` flags (``convert`` each value); DatasetError naming the
    flag ``what``."""
    result = {}
    for value in values or []:
        key, sep, rhs = value.partition("=")
        if not sep or not key or not rhs:
            raise DatasetError(f"{what} '{value}' must look like NAME=VALUE")
        try:
            result[key] = convert(rhs)
        except ValueError:
            raise DatasetError(f"{what} '{value}': '{rhs}' is not a valid value") from None
    return result
