# Cython glue between redpak's Python layers and the C core in csrc/.
from redpak._core cimport rp_version


def version():
    """Version string of the C core."""
    return rp_version().decode()
