"""redpak: auditable container nodes. Kept tiny: the launch path imports only what it uses."""

__version__ = "3.0.0.dev0"
