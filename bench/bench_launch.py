#!/usr/bin/env python3
"""Launch benchmark: now a section set of `redpak-bench run` (redpak.benchsuite).

Run as root from the checkout (after ./tools/setup.sh):
    .venv/bin/python bench/bench_launch.py [--quick] [-o result.json]

Same as `redpak-bench run --only latency,exports,memory,throughput`: launch latency of the
stock two- and three-level families (cold and cached) vs fork+exec, unshare, bwrap and crun;
cost per export up to 1000; PSS of the launcher; concurrent launches. Other options are
passed to `redpak-bench run`; docs/benchmarks.md describes the methodology.
"""

import sys

from redpak.benchsuite.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--only", "latency,exports,memory,throughput", *sys.argv[1:]]))
