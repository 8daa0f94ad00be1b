"""Package management per node (SPEC §8): librpm installs, libsolv resolves, redpak decides.

Modules: session (family settings), rpmdb (librpm), repos (repositories and metadata),
solver (libsolv and the family rules), scriptlets, journal (crash recovery), lock,
transaction (running a plan), progress, ops (the commands). Nothing here is imported on
the launch path; rpm and solv load only when a package command runs.
"""
