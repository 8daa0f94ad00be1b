"""Declares redpak's one native extension: the C core (csrc/*.c) and its Cython glue."""
from glob import glob

from setuptools import Extension, setup
from Cython.Build import cythonize

CFLAGS = [
    "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
    "-Werror=format-security", "-Werror=implicit-function-declaration",
]

core = Extension(
    "redpak._core",
    sources=["src/redpak/_core.pyx"] + sorted(glob("csrc/*.c")),
    include_dirs=["csrc"],
    extra_compile_args=CFLAGS,
)

setup(ext_modules=cythonize([core], language_level=3, quiet=True))
