"""redpak-bench: the QA benchmark suite (`redpak-bench run | report | check`).

run     measure this board: launch latency (cold and cached) against peers, cost per
        export, memory, controls overhead, package installs, concurrent launches and the
        machine, into one JSON result (schema.SCHEMA);
report  one self-contained HTML page comparing results (SVG plots drawn here, in Python);
check   exit 1 when a figure regressed against a baseline beyond a tolerance.

Only the public interfaces of redpak are measured: the `redwrap`, `redconf` and
`redwrap-dnf` commands and `redpak.Node`. docs/benchmarks.md describes the methodology.
"""
