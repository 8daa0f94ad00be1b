"""Declares redpak's one native extension: the C core (csrc/*.c) and its Cython glue.
Also builds the native `redwrap` executable (csrc/main/*.c linked with the C core), which
is installed in bin/ as `redwrap` and `redpak-run` through the scripts machinery."""
import os
import sys
from glob import glob

from setuptools import Extension, setup
from Cython.Build import cythonize
from distutils.command.build_scripts import build_scripts  # setuptools' distutils

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

NATIVE_NAMES = ("redwrap", "redpak-run")
NATIVE_SOURCES = sorted(glob("csrc/main/*.c")) + sorted(glob("csrc/*.c"))


class build_native(build_scripts):
    """Builds the native redwrap into the scripts directory, under each NATIVE_NAMES name.

    Its usage text comes from src/redpak/cli/redwrap.py and its cold path runs this build's
    interpreter (csrc/main/gen_header.py writes both into redwrap_build.h). Linked
    statically with musl when musl-gcc is there (tools/setup.sh installs musl-tools),
    else as the toolchain's default (dynamic) executable: bench/bench_core.py measures
    the three flavours (musl static fastest and smallest; glibc static pays ~0.3 ms of
    CPU probing at start on some VMs and ~0.8 MiB PSS)."""

    def run(self):
        from distutils.ccompiler import new_compiler
        from distutils.sysconfig import customize_compiler

        sys.path.insert(0, os.path.join("csrc", "main"))
        import gen_header
        tmp = os.path.join(self.get_finalized_command("build").build_temp, "redwrap")
        os.makedirs(tmp, exist_ok=True)
        with open(os.path.join(tmp, "redwrap_build.h"), "w", encoding="utf-8") as f:
            # the cold path's interpreter: this build's, unless a package build names
            # the target's (packaging/redpak.spec: REDPAK_COLD_PYTHON=/usr/bin/python3)
            python = os.environ.get("REDPAK_COLD_PYTHON") or sys.executable
            f.write(gen_header.header(os.fsencode(python)))
        if not self.build_musl(tmp):
            cc = new_compiler(force=True)
            customize_compiler(cc)
            objects = cc.compile(NATIVE_SOURCES, output_dir=tmp,
                                 include_dirs=[tmp, os.path.join("csrc", "main"), "csrc"],
                                 extra_postargs=CFLAGS)
            cc.link_executable(objects, "redwrap", output_dir=tmp)
        self.mkpath(self.build_dir)
        self.outfiles = []
        for name in NATIVE_NAMES:
            out = os.path.join(self.build_dir, name)
            self.copy_file(os.path.join(tmp, "redwrap"), out)
            os.chmod(out, 0o755)
            self.outfiles.append(out)

    @staticmethod
    def build_musl(tmp):
        """Static musl build: the fastest start and the smallest footprint (glibc's static
        start-up probes the CPU at length; a dynamic one pays ld.so). False if musl-gcc is
        missing or fails: the caller then links with the default toolchain."""
        import shutil
        import subprocess
        if not shutil.which("musl-gcc") or os.environ.get("REDPAK_NO_MUSL"):
            return False
        # musl has no kernel headers of its own: give it only the kernel's uapi ones.
        kh = os.path.join(tmp, "kernel-headers")
        os.makedirs(kh, exist_ok=True)
        arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                              text=True).stdout.strip()
        for name, target in (("linux", "/usr/include/linux"),
                             ("asm-generic", "/usr/include/asm-generic"),
                             ("asm", f"/usr/include/{arch}/asm")):
            link = os.path.join(kh, name)
            if os.path.isdir(target) and not os.path.lexists(link):
                os.symlink(target, link)
        cmd = (["musl-gcc", "-static", "-Wl,--build-id", *CFLAGS, "-idirafter", kh, "-I", tmp,
                "-I", os.path.join("csrc", "main"), "-I", "csrc", *NATIVE_SOURCES,
                "-o", os.path.join(tmp, "redwrap")])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print("redwrap: musl build failed, using the default toolchain:\n" + r.stderr,
                  file=sys.stderr)
            return False
        return True

    def get_outputs(self):
        return [os.path.join(self.build_dir, name) for name in NATIVE_NAMES]


setup(ext_modules=cythonize([core], language_level=3, quiet=True),
      # the source of the one "script": build_native compiles it instead of copying it
      scripts=["csrc/main/redwrap.c"],
      cmdclass={"build_scripts": build_native})
