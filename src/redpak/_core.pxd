cdef extern from "redpak.h":
    const char *rp_version()
