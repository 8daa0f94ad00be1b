"""Man pages and bash completion of redwrap, redconf and redwrap-dnf: generated from the
parsers that print --help (python -m redpak.cli.manpage), current in data/, listing the
options --help lists (the native redwrap's too), and completing options in a real bash."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redpak.cli import manpage

REPO = Path(__file__).resolve().parents[2]
LONG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_text(main, argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return out.getvalue()


def help_options(text: str) -> set[str]:
    """Long options of --help's option entries ("  -a ALIAS, --alias ALIAS  text")."""
    return {o for line in text.splitlines() if re.match(r"^\s+-", line)
            for o in LONG.findall(line.strip().split("  ")[0])}


def man_options(prog: str) -> set[str]:
    """Long options documented in the man page's option entries (.TP tags)."""
    lines = (REPO / "data" / "man" / f"{prog}.1").read_text().splitlines()
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == ".TP"]
    plain = [re.sub(r"\\f[BIRP]", " ", tag).replace("\\-", "-") for tag in tags]
    return {o for tag in plain for o in LONG.findall(tag)}


def test_generated_files_are_current():
    # fails when a parser changed without `python -m redpak.cli.manpage` being run
    assert manpage.main(["--check"]) == 0


@pytest.mark.parametrize("prog,module", [("redconf", "redpak.cli.redconf"),
                                         ("redwrap-dnf", "redpak.cli.redwrap_dnf")])
def test_man_page_lists_the_options_of_every_help(prog, module):
    mod = __import__(module, fromlist=["main", "build_parser"])
    texts = [help_text(mod.main, ["--help"])]
    page = manpage.page(prog)
    assert page.commands, "the parser's sub-commands were found"
    for command in page.commands:
        texts.append(help_text(mod.main, [command.name, "--help"]))
        for alias in command.aliases:  # an alias documents the same options
            assert set(LONG.findall(help_text(mod.main, [alias, "--help"]))) == set(
                LONG.findall(texts[-1]))
    in_help = {o for t in texts for o in help_options(t)}
    assert in_help and man_options(prog) == in_help


def test_native_redwrap_help_and_man_page_list_the_same_options():
    exe = Path(sys.executable).parent / "redwrap"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: install redpak (pip install -e .) to build it")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    options = help_options(out)
    assert {"--redpath", "--admin", "--dump-only", "--verbose"} <= options
    assert man_options("redwrap") == options


def test_man_pages_render_without_warnings(tmp_path):
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian package groff-base)")
    for prog in manpage.PROGS:
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                            str(REPO / "data" / "man" / f"{prog}.1")],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (prog, r.stderr)


def complete(prog: str, words: list[str], cwd: Path | None = None) -> list[str]:
    """COMPREPLY of the generated completion function, in a real bash."""
    script = REPO / "data" / "completion" / prog
    fn = "_" + prog.replace("-", "_")
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    cmd = (f"source '{script}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
           f"{fn}; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", cmd], capture_output=True,
                       text=True, cwd=cwd, check=True)
    assert r.stderr == ""
    return [w for w in r.stdout.splitlines() if w]


def test_redconf_completes_commands_and_their_options(tmp_path):
    assert complete("redconf", ["redconf", "c"]) == ["create", "config", "check", "compile"]
    assert complete("redconf", ["redconf", "compile", "--"]) == [
        "--help", "--redpath", "--admin", "--env", "--unset-env", "--verbose", "--yaml", "--json"]
    assert "mergeconfig" in complete("redconf", ["redconf", "-v", ""])
    opts = complete("redconf", ["redconf", "create", "--"])
    assert {"--alias", "--update", "--templates", "--root", "--json"} <= set(opts)
    assert "--expand" not in opts
    assert complete("redconf", ["redconf", "mergeconfig", "--ex"]) == ["--expand"]
    (tmp_path / "nodes").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert complete("redconf", ["redconf", "tree", "no"], cwd=tmp_path) == ["nodes"]
    assert complete("redconf", ["redconf", "create", "-t", "n"], cwd=tmp_path) == ["nodes"]


def test_redwrap_dnf_completes_after_options_with_values(tmp_path):
    assert complete("redwrap-dnf", ["redwrap-dnf", "-r", "/x", "ins"]) == ["install"]
    assert complete("redwrap-dnf", ["redwrap-dnf", "--lock-timeout", "5", "era"]) == ["erase"]
    assert complete("redwrap-dnf", ["redwrap-dnf", "install", "--ass"]) == ["--assumeyes"]
    assert complete("redwrap-dnf", ["redwrap-dnf", "repoquery", "--what"]) == [
        "--whatprovides", "--whatrequires"]
    (tmp_path / "node").mkdir()
    assert complete("redwrap-dnf", ["redwrap-dnf", "--redpath", "n"], cwd=tmp_path) == ["node"]


def test_redwrap_completes_options_then_the_program(tmp_path):
    assert complete("redwrap", ["redwrap", "--re"]) == ["--redpath"]
    assert "--dump-only" in complete("redwrap", ["redwrap", "-r", "/n", "--d"])
    (tmp_path / "app").mkdir()
    assert complete("redwrap", ["redwrap", "-r", "a"], cwd=tmp_path) == ["app"]
    assert "bash" in complete("redwrap", ["redwrap", "-r", "/n", "--", "bas"])
    assert "bash" in complete("redwrap", ["redwrap", "-r", "/n", "bas"])
    # arguments of the program are files, never redwrap's options
    (tmp_path / "--redfile").write_text("")
    assert complete("redwrap", ["redwrap", "-r", "/n", "--", "ls", "--red"],
                    cwd=tmp_path) == ["--redfile"]
    assert "root" in complete("redwrap", ["redwrap", "-U", "ro"])


def test_redpak_run_has_redwrap_completion_and_man_page():
    script = REPO / "data" / "completion" / "redpak-run"
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                        f"source '{script}'; complete -p redpak-run"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "complete -F _redwrap redpak-run"
    assert (REPO / "data" / "man" / "redpak-run.1").read_text() == ".so man1/redwrap.1\n"
