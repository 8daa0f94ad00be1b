"""redpak: auditable container nodes. Kept tiny: the launch path imports only what it uses.

Python API: ``redpak.Node(path).run(argv)``, ``.spawn(argv)`` and ``await
.spawn_async(argv)``, with subprocess's PIPE, DEVNULL, STDOUT and TimeoutExpired (see
redpak.api and docs/integrations.md). They are imported on first use.
"""

__version__ = "3.0.0.dev0"
_API = ("Node", "Process", "AsyncProcess", "CompletedRun", "PIPE", "DEVNULL", "STDOUT",
        "TimeoutExpired", "CalledProcessError")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'redpak' has no attribute {name!r}")
