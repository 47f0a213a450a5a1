"""The `alstm` command: one entry point, one subcommand per job.

Each subcommand lives in `reproduce/commands/<name>.py` and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. They are listed in the literal dict
``COMMANDS`` below (no registry). User mistakes surface as ``alstm_core.UserError`` (every
package's errors derive from it); this module turns them into a one-line message on stderr and exit
code 2, never a traceback.

Environment variables are read here and nowhere else; `main` puts what they say on ``args``:

- ``ALSTM_DEVICE``: the device of the commands given no ``--device`` (e.g. ``cpu`` on a machine whose
  GPU is busy, or where CPU results must be reproduced; the test suite sets it to ``cpu``). On
  ``args.default_device`` (None when unset or empty); a command uses ``args.device or
  args.default_device``, and the library then picks cuda where available, else cpu.
- torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ... (``TORCHRUN_VARIABLES``): on ``args.torchrun``
  (None when not launched by torchrun), read by `reproduce.runtime.distributed.setup`.
- ``ALSTM_DEBUG``: set, an OSError is raised with its traceback instead of printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alstm_core.errors import UserError

# subcommand -> (module under reproduce.commands, one-line help), in the pipeline's order
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("extract", "C3D and VGG-19 features of videos into a feature file"),
    "dataset": ("dataset", "build the protocol's file from annotations and features; inspect, convert "
                "(legacy Fuel) and repair feature files"),
    "finetune": ("finetune", "fine-tune C3D / VGG-19 from the public weights as the Caffe tools did; "
                 "C3D's volume mean"),
    "train": ("train", "train an attention LSTM on a feature file"),
    "evaluate": ("evaluate", "accuracy and mAP of checkpoints, ensembles or the C3D baseline"),
    "highlight": ("highlight", "classify a video and report the frames its attention highlights"),
    "synth": ("synth", "generate the built-in benchmark dataset (known salient frames)"),
}


def version() -> str:
    """The installed distribution's version (``alstm --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("alstm")
    except PackageNotFoundError:         # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alstm",
        description="Attention-LSTM action classification and highlighting in videos "
        "(Torabi & Sigal, arXiv 1708.09522).",
    )
    parser.add_argument("--version", action="version", version=f"alstm {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"reproduce.commands.{module_name}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# Variables torchrun sets in every process it launches; reproduce.runtime.distributed reads them from
# args.torchrun.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_variables(environ) -> dict[str, str] | None:
    """torchrun's variables from ``environ`` (None when not launched by torchrun)."""
    found = {name: environ[name] for name in TORCHRUN_VARIABLES if name in environ}
    return found if "WORLD_SIZE" in found else None


DEVICE_VARIABLE = "ALSTM_DEVICE"


def device_from_environment(environ) -> str | None:
    """``$ALSTM_DEVICE`` of ``environ``, None when unset or empty."""
    return environ.get(DEVICE_VARIABLE, "").strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.torchrun = torchrun_variables(os.environ)
    args.default_device = device_from_environment(os.environ)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"alstm {args.command}: error: {exc}", file=sys.stderr)
        if getattr(exc, "abandoned_hdf5", False):
            # HDF5 still holds a file it could not finish writing (a full disk); at exit it would try
            # again and crash. Everything committed is on disk already, so leave without its clean-up.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print(f"alstm {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied, missing file: the OS says it best
        if os.environ.get("ALSTM_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"alstm {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
