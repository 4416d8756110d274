"""Peak memory of a push does not grow with the catalog: the suite's ``memory`` scenario.

    python -m benchmarks.memory [--quick] [--runs N] [--out DIR]

is ``python -m benchmarks --only memory ...``; the scenario itself is
:mod:`benchmarks.scenarios.memory`.
"""

from __future__ import annotations

import sys

from benchmarks.suite import main

if __name__ == "__main__":
    sys.exit(main(["--only", "memory", *sys.argv[1:]]))
