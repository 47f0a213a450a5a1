"""Shared pytest settings. Fixtures live in the test modules that use them."""

import os

# Tests build small models; more threads than cores only adds contention on the CI's 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
