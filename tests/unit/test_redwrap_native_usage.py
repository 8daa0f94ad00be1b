"""The native redwrap and the Python cold path agree on the command line: same usage text,
same usage errors, and the same split between options and program (csrc/main/args.c vs
redpak.cli.redwrap.parse_args). No root needed: nothing is launched."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redpak.cli import redwrap

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "csrc" / "main"
INT_MAX = 2**31 - 1


def native_redwrap() -> Path:
    """The installed native executable (next to this interpreter, as pip puts it)."""
    exe = Path(sys.executable).parent / "redwrap"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: install redpak (pip install -e .) to build it")
    with open(exe, "rb") as f:
        assert f.read(4) == b"\x7fELF", f"{exe} is not the native executable"
    return exe


def gen_header():
    sys.path.insert(0, str(MAIN))
    try:
        import gen_header as module
    finally:
        sys.path.remove(str(MAIN))
    return module


# ---- usage text ---------------------------------------------------------------------------

def test_generator_reads_the_python_usage_text():
    assert gen_header().python_usage() == redwrap.USAGE


def test_c_string_round_trips_through_a_compiler(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed")
    text = 'a "quoted" \\ back??/slash\ttab\né\n\nlast'
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\nint main(void) { fputs(' + gen_header().c_string(text)
                   + ', stdout); return 0; }\n')
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(tmp_path / "t"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "t")], capture_output=True, check=True).stdout
    assert out == text.encode()


def test_native_version_is_the_python_one():
    from redpak import __version__
    r = subprocess.run([str(native_redwrap()), "-a", "--version", "-r", "/nowhere"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"redwrap {__version__}\n", "")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        redwrap.run(["--version"])
    assert exit_.value.code == 0 and out.getvalue() == r.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_native_help_is_the_python_usage(flag):
    r = subprocess.run([str(native_redwrap()), "-r", "/nowhere", flag, "--", "x"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0
    assert r.stdout == redwrap.USAGE
    assert r.stderr == ""


# ---- usage errors: the executable against the Python command ------------------------------

def python_run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = redwrap.run(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue()


@pytest.mark.parametrize("argv", [
    [],
    ["--", "prog"],
    ["-r"],
    ["--redpath"],
    ["-r", ""],
    ["--redpath=", "--", "x"],
    ["-r", "/n"],
    ["-r", "/n", "--"],
    ["-r", "/n", "-x", "prog"],
    ["-r", "/n", "-ax", "prog"],
    ["-r", "/n", "-aé", "prog"],
    ["-r", "/n", "-a\u00e9b", "prog"],
    ["-r", "/n", "-v=2", "prog"],
    ["-r", "/n", "-as=x", "prog"],
    ["-r", "/n", "-=", "prog"],
    ["-r", "/n", "-=x", "prog"],
    ["-r", "/n", "--", ""],
    ["-D", "-r", "/n", "", "x"],
    ["-r", "/n", "-aU"],
    ["-r", "/n", "--admin=1", "prog"],
    ["-r", "/n", "--verbose=x", "prog"],
    ["-r", "/n", "--verbose=", "prog"],
    ["-r", "/n", "--verbose=\u00b2", "prog"],
    ["-r", "/n", "--unknown", "prog"],
    ["-r", "/n", "-U"],
    ["-r", "/n", "-x", "-h"],
])
def test_usage_errors_match_the_python_command(argv):
    status, err = python_run(argv)
    assert status == 125 and err.startswith("redwrap: ")
    r = subprocess.run([str(native_redwrap()), *argv], capture_output=True, text=True,
                       timeout=30, check=False, env={"REDPAK_PYTHON": "/nonexistent"})
    assert (r.returncode, r.stderr) == (status, err)
    assert r.stdout == ""


# ---- parsing: csrc/main/args.c against parse_args ---------------------------------------

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redwrap.h"
/* Reads command lines on stdin ("N" then N hex-encoded arguments, one a line) and
 * prints what rp_args_parse() made of each, then "end". */
static void hex(const char *key, const char *s)
{
    printf("%s ", key);
    if (!s) { printf("-\n"); return; }
    printf("=");
    for (; *s; s++) printf("%02x", (unsigned char)*s);
    printf("\n");
}
static char *unhex(const char *line)
{
    size_t n = strlen(line) / 2;
    char *s = calloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) sscanf(line + 2 * i, "%2hhx", (unsigned char *)&s[i]);
    return s;
}
int main(void)
{
    char line[8192];
    while (fgets(line, sizeof(line), stdin)) {
        int argc = atoi(line), r;
        char **argv = calloc((size_t)argc + 1, sizeof(char *)), msg[512];
        struct rp_args a;
        for (int i = 0; i < argc && fgets(line, sizeof(line), stdin); i++) {
            line[strcspn(line, "\n")] = 0;
            argv[i] = unhex(line);
        }
        r = rp_args_parse(argc, argv, &a, msg, sizeof(msg));
        if (r == RP_ARGS_HELP) {
            printf("help\n");
        } else if (r == RP_ARGS_VERSION) {
            printf("version\n");
        } else if (r == RP_ARGS_ERROR) {
            hex("error", msg);
        } else {
            printf("ok\n");
            hex("redpath", a.redpath); hex("user", a.user); hex("group", a.group);
            hex("smack", a.smack); hex("bwrap", a.bwrap);
            printf("flags %d %d %d %d %d %d %d\n", a.admin, a.strict, a.force, a.dump, a.dump_only,
                   a.verbose, a.unsafe);
            for (int i = 0; i < a.nprogram; i++) hex("arg", a.program[i]);
            if (a.program[a.nprogram]) printf("unterminated\n");
        }
        printf("end\n");
        fflush(stdout);
        for (int i = 0; i < argc; i++) free(argv[i]);
        free(argv);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def parser(tmp_path_factory):
    """csrc/main/args.c in a driver process (sanitized) that parses command lines sent
    on its stdin."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the parser driver")
    d = tmp_path_factory.mktemp("args")
    (d / "driver.c").write_text(DRIVER)
    out = d / "driver"
    subprocess.run(["gcc", "-O1", "-std=gnu11", "-Wall", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", f"-I{MAIN}", "-o", str(out), str(d / "driver.c"),
                    str(MAIN / "args.c")], check=True)
    proc = subprocess.Popen([str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0  # no sanitizer report
    proc.stdout.close()


def native_parse(parser: subprocess.Popen, argv: list[str]) -> tuple:
    parser.stdin.write(f"{len(argv)}\n" + "".join(a.encode().hex() + "\n" for a in argv))
    parser.stdin.flush()
    lines = []
    while (line := parser.stdout.readline().rstrip("\n")) != "end":
        assert line, "the parser driver died"
        lines.append(line)

    def text(line: str) -> str | None:
        value = line.split(" ", 1)[1]
        return None if value == "-" else bytes.fromhex(value[1:]).decode()

    assert "unterminated" not in lines  # the program list is NULL-terminated
    if lines[0] in ("help", "version"):
        return (lines[0],)
    if lines[0].startswith("error "):
        return ("error", text(lines[0]))
    fields = {ln.split(" ", 1)[0]: text(ln) for ln in lines[1:6]}
    flags = tuple(int(x) for x in lines[6].split()[1:])
    program = [text(ln) for ln in lines[7:]]
    return ("ok", fields["redpath"], fields["user"], fields["group"], fields["smack"],
            fields["bwrap"], flags, program)


def python_parse(argv: list[str]) -> tuple:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            a = redwrap.parse_args(argv)
    except redwrap.UsageError as err:
        return ("error", str(err))
    except SystemExit:
        return ("help",) if out.getvalue() == redwrap.USAGE else ("version",)
    flags = (int(a.admin), int(a.strict), int(a.force), int(a.dump), int(a.dump_only),
             min(a.verbose, INT_MAX), int(a.unsafe))
    return ("ok", a.redpath, a.user, a.group, a.smack, a.bwrap, flags, a.program)


@pytest.mark.parametrize("argv", [
    ["-r", "/n", "prog", "--bind", "/", "/"],
    ["--redpath", "/n", "--", "-h", "--", "x"],
    ["--redpath=/n", "-a", "-s", "-f", "-d", "-v", "-v", "prog"],
    ["-r/n", "-Ubob", "-Gstaff", "-SLabel", "-", "arg"],
    ["-r", "/n", "--user", "bob", "--group=", "--smack=x=y", "--dump-only"],
    ["-r", "/a", "-r", "/b", "--verbose=007", "--verbose", "p"],
    ["-r", "/n", "--verbose=99999999999999999999", "p"],
    ["-r", "--", "-D"],
    ["-r", "/n", "-r=x", "p"],
    ["-as", "-r", "/n", "p"],
    ["-avvr", "/n", "p"],
    ["-ar/n", "-fdD"],
    ["-r", "/n", "-vaUbob", "-sG", "staff", "-SL", "p"],
    ["-r", "/n", "-aUv", "p"],
    ["-ah"],
    ["-ar"],
    ["-r", "/n", "", "p"],
    ["-h"],
])
def test_parser_matches_python(parser, argv):
    assert native_parse(parser, argv) == python_parse(argv)


TOKENS = ["-r", "--redpath", "-r/n", "--redpath=/n", "--redpath=", "-a", "--admin", "-s",
          "--strict", "-f", "--force", "-d", "--dump", "-D", "--dump-only", "-U", "--user",
          "-Ubob", "--user=bob", "-G", "-Gstaff", "--group", "-S", "--smack=L", "-v",
          "--verbose", "--verbose=2", "--verbose=x", "--verbose=", "-vv", "-as", "-avD", "-aU", "-sGx", "-dr", "-Dh", "-ax",
          "-av=1", "--", "-",
          "-h", "--help", "--version", "--version=1", "-ah", "--admin=1", "-x", "--x=y",
          "prog", "/n", "", "a b", "--bind", "-r=",
          "-é", "é", "--rpath", "--rp=/n", "--rp", "--uid", "--gid=0", "--unsafe",
          "--unsafe=1", "--bwrap", "--bwrap=/usr/bin/bwrap", "ls", "-l", "--rpat"]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(TOKENS),
                          st.text(st.characters(blacklist_categories=("Cs",),
                                                blacklist_characters="\x00"), max_size=6)),
                max_size=8))
def test_parser_matches_python_on_random_command_lines(parser, argv):
    assert native_parse(parser, argv) == python_parse(argv)


def test_cold_path_gets_the_arguments_verbatim(tmp_path):
    """An option that needs policy sends everything, unchanged, to REDPAK_PYTHON."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n")
    fake.chmod(0o755)
    argv = ["-v", "-D", "--redpath", "rel/../n", "--", "prog", "--bind", "/", "/", ""]
    r = subprocess.run([str(native_redwrap()), *argv], capture_output=True, text=True,
                       timeout=30, check=False, env={"REDPAK_PYTHON": str(fake)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(f"[{a}]" for a in ["-P", "-m", "redpak.cli.redwrap", *argv])
    assert "rebuilding the plan (option -D needs the plan compiler)" in r.stderr
    assert str(fake) in r.stderr


def test_cold_path_never_imports_from_the_current_directory(tmp_path):
    """`python -m` puts the cwd first on sys.path: a planted `redpak` must not run."""
    marker = tmp_path / "planted-code-ran"
    fake = tmp_path / "redpak" / "cli"
    fake.mkdir(parents=True)
    (tmp_path / "redpak" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (fake / "__init__.py").write_text("")
    (fake / "redwrap.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    r = subprocess.run([str(native_redwrap()), "-D", "-r", str(tmp_path / "no-node")],
                       capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
                       env={"REDPAK_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert not marker.exists()
    assert r.returncode == 125 and "no-node" in r.stderr, r.stderr  # the real cold path


def test_missing_cold_path_interpreter_is_a_clean_125(tmp_path):
    r = subprocess.run([str(native_redwrap()), "-D", "-r", str(tmp_path)], capture_output=True,
                       text=True, timeout=30, check=False,
                       env={"REDPAK_PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 125
    assert r.stderr.startswith("redwrap: cold path: cannot run ")
    assert "REDPAK_PYTHON" in r.stderr


@pytest.mark.parametrize("redpath,expected", [
    ("/a//b/./c/", "/a/b/c"),
    ("/a/b/../../../c", "/c"),
    ("//a/b", "/a/b"),
    ("rel/./x/../y", None),
    (".", None),
])
def test_node_path_normalised_like_python(tmp_path, redpath, expected):
    """-v names the cache file the native looked for: its name holds a hash of the
    normalised node path, computed alike in C and in Python."""
    from redpak.node import normalize_path
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = {"REDPAK_PYTHON": str(fake), "REDPAK_CACHE_DIR": str(cache)}
    r = subprocess.run([str(native_redwrap()), "-v", "-r", redpath, "--", "p"],
                       capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0, r.stderr
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        norm = normalize_path(redpath)
    finally:
        os.chdir(cwd)
    if expected:
        assert norm == expected
    expected_file = redwrap.cache_path(norm, False, os.getuid(), environ=env)
    assert expected_file.startswith(f"{cache}/plan-")
    assert f"(no cached plan {expected_file})" in r.stderr, r.stderr
