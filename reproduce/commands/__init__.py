"""One module per `alstm` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
