"""Where and how a stage runs: the device, torchrun's processes, the numeric precision."""
