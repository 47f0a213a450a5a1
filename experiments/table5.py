"""Table 5 of the paper (see reproduce/tables/rows.py for its rows); `--help` for options."""

import sys

from _table import main

if __name__ == "__main__":
    sys.exit(main(5))
