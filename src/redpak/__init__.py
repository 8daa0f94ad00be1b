"""redpak: auditable container nodes. Kept tiny: the launch path imports only what it uses.

Python API: ``redpak.Node(path).run(argv)`` and ``.spawn(argv)`` (see redpak.api).
"""

__version__ = "3.0.0.dev0"
__all__ = ["Node", "Process", "__version__"]


def __getattr__(name: str):
    if name in ("Node", "Process"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'redpak' has no attribute {name!r}")
