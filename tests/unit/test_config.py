# Tests for config.py: schema typing, case rules, and every way a YAML file can be refused.

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from redpak import config
from redpak.config import (CAPABILITY_NAMES, MAX_BYTES, load_config, load_yaml_mapping,
                           parse_config, parse_yaml_mapping)
from redpak.errors import ConfigError
from redpak.model import (Capability, CpuMax, CpuSet, EnvEntry, EnvMode, Export, ExportMode,
                          IoMax, IoWeight, Share,
                          ShareValue, Tristate)

FILE = "app/etc/redpak.yaml"


def doc(body: str) -> bytes:
    return textwrap.dedent(body).lstrip("\n").encode()


def with_config(lines: str) -> bytes:
    """A minimal valid file with `lines` (already indented by 2) under config:."""
    return b"headers:\n  alias: app\nconfig:\n" + lines.encode() + b"\n"


def parse(data: bytes):
    return parse_config(data, FILE)


def error(data: bytes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return info.value


def assert_error(err: ConfigError, line: int | None, key: str, *fragments: str) -> None:
    text = str(err)
    where = f"{FILE}:{line}" if line else FILE
    prefix = f"{where}: {key}: " if key else f"{where}: "
    assert text.startswith(prefix), text
    assert err.line == line and err.key == key
    for fragment in fragments:
        assert fragment in text, text


# ------------------------------------------------------------------------ valid documents

FULL = doc("""
    headers:
      alias: my-app
      name: 0b7c-11
      info: demo node
    config:
      path: /bin:/usr/bin
      ldpath: [/lib, /lib64]
      rpmdir: $NODE_PATH/var/lib/rpm
      umask: 027
      hostname: no
      gpgcheck: Yes
      verbose: 2
      set-user: 1000
      share_all: disabled
      share_net: /proc/1/ns/net
      die-with-parent: enabled
      capabilities:
        - {cap: all, add: 0}
        - cap: NET_ADMIN
          add: 1
    exports:
      - mode: Restricted
        mount: /usr
        path: /usr
      - mode: tmpfs
        mount: /tmp
    environ:
      - key: PS1
        mode: Remove
      - key: HOME
        value: /home/$NODE_ALIAS
""")


def test_full_document_is_typed_by_schema() -> None:
    cfg = parse(FULL)
    assert (cfg.file, cfg.alias, cfg.name, cfg.info) == (FILE, "my-app", "0b7c-11", "demo node")
    s = cfg.settings
    assert s.path == ("/bin", "/usr/bin") and s.ldpath == ("/lib", "/lib64")
    assert s.rpmdir == "$NODE_PATH/var/lib/rpm"
    assert s.umask == 0o027 and s.hostname == "no" and s.gpgcheck is True
    assert s.verbose == 2 and s.set_user == "1000"
    assert s.share_all == ShareValue(Share.DISABLED, line=14)
    assert s.share_net == ShareValue(Share.JOIN, "/proc/1/ns/net", line=15)
    assert s.die_with_parent is Tristate.ENABLED
    assert s.capabilities == (Capability("all", False, 18), Capability("cap_net_admin", True, 19))
    assert s.lines["umask"] == 9 and s.lines["share_net"] == 15 and s.lines["path"] == 6
    assert "cgroups" not in s.lines
    assert cfg.exports == (Export(ExportMode.RESTRICTED, "/usr", "/usr", line=22),
                           Export(ExportMode.TMPFS, "/tmp", line=25))
    assert cfg.environ == (EnvEntry("PS1", None, EnvMode.REMOVE, line=28),
                           EnvEntry("HOME", "/home/$NODE_ALIAS", EnvMode.DEFAULT, line=30))
    assert cfg.warnings == ()


def test_load_config_reads_file(tmp_path) -> None:
    path = tmp_path / "redpak.yaml"
    path.write_bytes(FULL)
    cfg = load_config(path)
    assert cfg.file == str(path) and cfg.alias == "my-app"
    assert load_config(str(path)) == cfg


def test_only_headers_is_enough() -> None:
    cfg = parse(b"headers:\n  alias: a\n")
    assert cfg.alias == "a" and cfg.name is None and cfg.exports == () and cfg.environ == ()
    assert cfg.settings == config.Settings()


def test_empty_sections_mean_nothing_set() -> None:
    cfg = parse(b"headers:\n  alias: a\nconfig:\nexports:\nenviron:\n")
    assert cfg.settings == config.Settings() and cfg.exports == () and cfg.environ == ()


# ------------------------------------------------------------------------ value typing

@pytest.mark.parametrize("line, field, expected", [
    ("path: /a:/b::/c", "path", ("/a", "/b", "/c")),
    ("path: [/a, '/b c']", "path", ("/a", "/b c")),
    ("path: /a", "path", ("/a",)),
    ("ldpath: /lib:/usr/lib", "ldpath", ("/lib", "/usr/lib")),
    ("rpmdir: /var/lib/rpm", "rpmdir", "/var/lib/rpm"),
    ("persistdir: /p", "persistdir", "/p"),
    ("cachedir: /c", "cachedir", "/c"),
    ("gpgcheck: off", "gpgcheck", False),
    ("verbose: 0", "verbose", 0),
    ("verbose: 12", "verbose", 12),
    ("umask: 027", "umask", 0o027),
    ("umask: 0755", "umask", 0o755),
    ("umask: 77", "umask", 0o77),
    ("umask: '022'", "umask", 0o22),
    ("umask: 0o027", "umask", 0o27),
    ("hostname: no", "hostname", "no"),
    ("hostname: 'yes'", "hostname", "yes"),
    ("hostname: $LEAF_ALIAS", "hostname", "$LEAF_ALIAS"),
    ("chdir: /home/x", "chdir", "/home/x"),
    ("set-user: 1000", "set_user", "1000"),
    ("set-group: wheel", "set_group", "wheel"),
    ("smack: App::Label", "smack", "App::Label"),
    ("share_all: Enabled", "share_all", ShareValue(Share.ENABLED, line=4)),
    ("share_user: UNSET", "share_user", ShareValue(Share.UNSET, line=4)),
    ("share_cgroup: disabled", "share_cgroup", ShareValue(Share.DISABLED, line=4)),
    ("share_pid: /proc/$PID/ns/pid", "share_pid", ShareValue(Share.JOIN, "/proc/$PID/ns/pid", 4)),
    ("share_ipc: ${NS}/ipc", "share_ipc", ShareValue(Share.JOIN, "${NS}/ipc", 4)),
    ("share_time: enabled", "share_time", ShareValue(Share.ENABLED, line=4)),
    ("share_uts: disabled", "share_uts", ShareValue(Share.DISABLED, line=4)),
    ("die-with-parent: Disabled", "die_with_parent", Tristate.DISABLED),
    ("die-with-parent: true", "die_with_parent", Tristate.ENABLED),
    ("new-session: unset", "new_session", Tristate.UNSET),
    ("new-session: false", "new_session", Tristate.DISABLED),
    ("map-root-user: 1", "map_root_user", True),
    ("inherit-env: no", "inherit_env", False),
    ("cgrouproot: /sys/fs/cgroup/redpak", "cgrouproot", "/sys/fs/cgroup/redpak"),
    ("unsafe: true", "unsafe", True),
])
def test_config_key_types(line: str, field: str, expected: object) -> None:
    settings = parse(with_config("  " + line)).settings
    assert getattr(settings, field) == expected
    assert settings.lines[field] == 4


@pytest.mark.parametrize("text, value", [
    (t, v) for v, words in ((True, ("true", "yes", "on", "1", "enabled")),
                            (False, ("false", "no", "off", "0", "disabled")))
    for word in words for t in (word, word.upper(), word.capitalize())
])
def test_bool_spellings(text: str, value: bool) -> None:
    assert parse(with_config(f"  gpgcheck: {text}")).settings.gpgcheck is value


@pytest.mark.parametrize("key", ["rpmdir", "gpgcheck", "verbose", "umask", "hostname",
                                 "share_net", "die-with-parent", "capabilities", "cgroups",
                                 "seccomp", "landlock", "path"])
def test_empty_value_is_not_set(key: str) -> None:
    settings = parse(with_config(f"  {key}:")).settings
    assert settings == config.Settings()
    assert settings.lines == {}


def test_quoted_empty_string_is_text() -> None:
    assert parse(with_config("  hostname: ''")).settings.hostname == ""


@pytest.mark.parametrize("body, field, expected", [
    ("alias: yes", "alias", "yes"),
    ("alias: 0755", "alias", "0755"),
    ("alias: 'true'", "alias", "true"),
    ("alias: a\n  name: 1e3", "name", "1e3"),
    ("alias: a\n  name: 2001-01-01", "name", "2001-01-01"),
    ("alias: a\n  info: 0x1F", "info", "0x1F"),
    ("alias: a\n  info: .inf", "info", ".inf"),
    ("alias: a\n  info: café ✓", "info", "café ✓"),
])
def test_yaml11_lookalikes_stay_text(body: str, field: str, expected: str) -> None:
    cfg = parse(f"headers:\n  {body}\n".encode())
    assert getattr(cfg, field) == expected


def test_environ_values_are_raw_text() -> None:
    cfg = parse(doc("""
        headers: {alias: a}
        environ:
          - {key: A, value: 010}
          - {key: B, value: on}
          - {key: C, value: "x: y"}
          - {key: D, value: ''}
          - {key: E}
          - key: F
            value:
    """))
    assert [(e.key, e.value) for e in cfg.environ] == [
        ("A", "010"), ("B", "on"), ("C", "x: y"), ("D", ""), ("E", None), ("F", None)]


@pytest.mark.parametrize("mode", list(ExportMode))
def test_every_export_mode_any_case(mode: ExportMode) -> None:
    for spelling in (mode.value, mode.value.lower(), mode.value.upper()):
        cfg = parse(f"headers: {{alias: a}}\nexports:\n  - {{mode: {spelling}, mount: /m}}\n"
                    .encode())
        assert cfg.exports[0].mode is mode


@pytest.mark.parametrize("mode", list(EnvMode))
def test_every_environ_mode_any_case(mode: EnvMode) -> None:
    for spelling in (mode.value, mode.value.lower(), mode.value.upper()):
        cfg = parse(f"headers: {{alias: a}}\nenviron:\n  - {{key: K, mode: {spelling}}}\n"
                    .encode())
        assert cfg.environ[0].mode is mode


def test_export_fields_and_lines() -> None:
    cfg = parse(doc("""
        headers: {alias: a}
        exports:
          - mode: Symlink
            mount: /home/$LEAF_ALIAS
            path: $NODE_PATH/private
            info: home
            warn: careful
          - {mode: Internal, mount: /etc/x, path: 3}
    """))
    assert cfg.exports == (
        Export(ExportMode.SYMLINK, "/home/$LEAF_ALIAS", "$NODE_PATH/private", "home",
               "careful", line=3),
        Export(ExportMode.INTERNAL, "/etc/x", "3", line=8))


def test_keys_and_sections_are_case_insensitive() -> None:
    cfg = parse(doc("""
        HEADERS:
          Alias: a
          NAME: n
        Config:
          Share_Net: ENABLED
          DIE-WITH-PARENT: Enabled
          UMASK: 022
          CGroups:
            MEM: {MAX: 1G, Oom_Group: YES}
          SecComp: {Profile: DEFAULT, Deny: [KEYCTL]}
        EXPORTS:
          - MODE: PUBLICFILE
            Mount: /etc/hosts
        Environ:
          - KEY: Path
            VALUE: /bin
    """))
    assert cfg.alias == "a" and cfg.name == "n"
    s = cfg.settings
    assert s.share_net == ShareValue(Share.ENABLED, line=5)
    assert s.die_with_parent is Tristate.ENABLED and s.umask == 0o22
    assert s.cgroups.mem_max == 1 << 30 and s.cgroups.mem_oom_group is True
    assert s.seccomp.profile == "default" and s.seccomp.deny == ("keyctl",)
    assert cfg.exports[0].mode is ExportMode.PUBLIC_FILE
    assert cfg.environ[0].key == "Path", "variable names keep their case"


# ------------------------------------------------------------------------ capabilities

@pytest.mark.parametrize("written, canonical", [
    ("net_admin", "cap_net_admin"), ("CAP_NET_ADMIN", "cap_net_admin"),
    ("Cap_Sys_Admin", "cap_sys_admin"), ("chown", "cap_chown"),
    ("checkpoint_restore", "cap_checkpoint_restore"), ("all", "all"), ("ALL", "all"),
])
def test_capability_names(written: str, canonical: str) -> None:
    caps = parse(with_config(f"  capabilities:\n    - {{cap: {written}, add: true}}"))
    assert caps.settings.capabilities == (Capability(canonical, True, line=5),)


def test_capability_table_is_the_linux_one() -> None:
    assert len(CAPABILITY_NAMES) == 41 == len(set(CAPABILITY_NAMES))
    assert CAPABILITY_NAMES[0] == "cap_chown" and CAPABILITY_NAMES[21] == "cap_sys_admin"
    assert CAPABILITY_NAMES[40] == "cap_checkpoint_restore"


@pytest.mark.parametrize("add, value", [("0", False), ("1", True), ("false", False),
                                        ("True", True)])
def test_capability_add(add: str, value: bool) -> None:
    caps = parse(with_config(f"  capabilities:\n    - {{cap: kill, add: {add}}}"))
    assert caps.settings.capabilities[0].add is value


# ------------------------------------------------------------------------ cgroups / seccomp

def test_cgroups_all_keys() -> None:
    cg = parse(with_config(textwrap.indent(textwrap.dedent("""
        cgroups:
          cpuset: {cpus: "0-3,5", mems: 0, cpus_partition: Isolated}
          mem: {min: 1k, low: 2M, high: 3g, max: MAX, oom_group: 1, swap_high: 4T,
                swap_max: 0}
          cpu: {weight: 10000, weight_nice: -20, max: 50000 100000}
          io:
            weight: default 200
            max: |
              8:0 rbps=1048576 wiops=120
              8:16 WBPS=max
          pids: {max: 64}
    """).strip(), "  "))).settings.cgroups
    assert (cg.cpuset_cpus, cg.cpuset_mems, cg.cpuset_cpus_partition) == ("0-3,5", "0",
                                                                        "isolated")
    assert (cg.mem_min, cg.mem_low, cg.mem_high, cg.mem_max) == (1024, 2 << 20, 3 << 30, "max")
    assert cg.mem_oom_group is True and (cg.mem_swap_high, cg.mem_swap_max) == (4 << 40, 0)
    assert (cg.cpu_weight, cg.cpu_weight_nice, cg.cpu_max) == (10000, -20, "50000 100000")
    assert cg.io_weight == "default 200"
    assert cg.io_max == "8:0 rbps=1048576 wiops=120\n8:16 wbps=max"
    assert cg.pids_max == 64 and cg.line == 4


def test_cgroup_values_are_typed_at_load() -> None:
    # parsed once here: merge and compile read these attributes, never the text
    cg = parse(with_config(textwrap.indent(textwrap.dedent("""
        cgroups:
          cpuset: {cpus: "0-2, 6,7", mems: 0}
          cpu: {max: 25000}
          io:
            weight: |
              default 100
              8:0 200
            max: |
              8:0 rbps=1048576 WIOPS=max
              8:16 riops=10
              8:0 wbps=4096
    """).strip(), "  "))).settings.cgroups
    assert type(cg.cpuset_cpus) is CpuSet and cg.cpuset_cpus.ids == {0, 1, 2, 6, 7}
    assert cg.cpuset_cpus == "0-2,6-7" and cg.cpuset_mems.ids == {0}
    assert type(cg.cpu_max) is CpuMax
    assert (cg.cpu_max.quota, cg.cpu_max.period, cg.cpu_max.ratio) == (25000, 100000, 0.25)
    assert type(cg.io_weight) is IoWeight
    assert cg.io_weight.entries == (("default", 100), ("8:0", 200))
    assert type(cg.io_max) is IoMax     # per device; a device named twice is one entry
    assert cg.io_max.devices == (("8:0", (("rbps", 1048576), ("wiops", "max"),
                                          ("wbps", 4096))),
                                 ("8:16", (("riops", 10),)))
    assert cg.io_max == "8:0 rbps=1048576 wiops=max wbps=4096\n8:16 riops=10"
    with pytest.raises(AttributeError):
        cg.cpuset_cpus.ids = frozenset()    # typed values are immutable


def test_typed_cgroup_values_survive_copy_and_pickle() -> None:
    import copy
    import pickle

    cg = config.cgroup_settings(cpuset_cpus="1-3", cpu_max="max", io_max="8:0 rbps=10",
                                io_weight="50")
    for clone in (copy.deepcopy(cg), pickle.loads(pickle.dumps(cg))):
        assert clone == cg and clone.cpuset_cpus.ids == {1, 2, 3}
        assert clone.cpu_max.quota is None and clone.io_max.devices == cg.io_max.devices
        assert clone.io_weight.entries == (("default", 50),)


def test_typed_cgroup_values_dump_as_yaml_text() -> None:
    # `redconf config --format yaml` dumps the parsed values with PyYAML's safe dumper
    import yaml

    cg = parse(with_config("  cgroups: {cpuset: {cpus: 0-1}, cpu: {max: max}}")).settings.cgroups
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump({"cpus": cg.cpuset_cpus, "max": cg.cpu_max}, Dumper=dumper)
    assert yaml.safe_load(text) == {"cpus": "0-1", "max": "max 100000"}


@pytest.mark.parametrize("body, message", [
    ("cpuset: {cpus: 3-1}", "reversed"),
    ("cpuset: {mems: a}", "CPU/node list"),
    ("cpu: {max: 10}", "below 1000"),
    ("io: {max: '8:0 rbps=1M'}", "MAJ:MIN"),
    ("io: {weight: 'default 0'}", "1 to 10000"),
])
def test_bad_typed_cgroup_value_names_file_key_and_line(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(with_config(f"  cgroups:\n    {body}"))
    text = str(err.value)
    assert message in text and "cgroups." in text and ":5" in text, text


@pytest.mark.parametrize("key, value, stored", [
    # typed once at load: sizes in bytes, cpu.max with its period, pids.max a number
    ("cpu.max", "max", "max 100000"), ("cpu.max", "max 100000", "max 100000"),
    ("cpu.max", "20000", "20000 100000"), ("pids.max", "64", 64), ("mem.max", "64m", 64 << 20), ("cpu.weight", "1", 1), ("cpu.weight_nice", "19", 19),
    ("io.weight", "100", "default 100"), ("io.weight", "'8:0 50'", "8:0 50"),
    ("pids.max", "Max", "max"), ("cpuset.cpus", "7", "7"), ("mem.max", "1073741824",
                                                            1073741824),
])
def test_cgroup_values(key: str, value: str, stored: object) -> None:
    ctl, name = key.split(".")
    cg = parse(with_config(f"  cgroups:\n    {ctl}:\n      {name}: {value}")).settings.cgroups
    field = {"cpuset": "cpuset_", "mem": "mem_", "cpu": "cpu_", "io": "io_",
             "pids": "pids_"}[ctl] + name
    assert getattr(cg, field) == stored


@pytest.mark.parametrize("key, value", [
    ("cpuset.cpus", "0-"), ("cpuset.cpus", "a"), ("cpuset.cpus", "5-3"),
    ("cpuset.cpus_partition", "leaf"), ("mem.max", "64X"), ("mem.max", "-1"),
    ("mem.low", "1.5G"), ("mem.oom_group", "maybe"), ("cpu.weight", "0"),
    ("cpu.weight", "10001"), ("cpu.weight_nice", "20"), ("cpu.weight_nice", "x"),
    ("cpu.max", "fast"), ("cpu.max", "1 2 3"), ("cpu.max", "500"),
    ("cpu.max", "50000 10"), ("io.weight", "0"), ("io.weight", "default x"),
    ("io.max", "8:0"), ("io.max", "8:0 speed=3"), ("io.max", "sda rbps=1"),
    ("pids.max", "-5"), ("pids.max", "lots"), ("mem.max", "[1]"),
])
def test_cgroup_errors(key: str, value: str) -> None:
    ctl, name = key.split(".")
    err = error(with_config(f"  cgroups:\n    {ctl}:\n      {name}: {value}"))
    assert_error(err, 6, f"config.cgroups.{ctl}.{name}")


def test_seccomp_and_landlock() -> None:
    s = parse(with_config(textwrap.indent(textwrap.dedent("""
        seccomp:
          profile: None
          deny: [keyctl, Add_Key]
          allow: [ptrace]
          errno: 38
        landlock: {enabled: yes}
    """).strip(), "  "))).settings
    assert s.seccomp == config.SeccompSettings("none", ("keyctl", "add_key"), ("ptrace",),
                                               "38", line=4)
    assert s.landlock == config.LandlockSettings(True, line=9)
    assert parse(with_config("  landlock: off")).settings.landlock.enabled is False
    assert parse(with_config("  seccomp: {errno: eperm}")).settings.seccomp.errno == "EPERM"


@pytest.mark.parametrize("line, key, fragment", [
    ("seccomp: {profile: strict}", "config.seccomp.profile", "valid: default, none"),
    ("seccomp: {profile: defualt}", "config.seccomp.profile", "did you mean default?"),
    ("seccomp: {deny: keyctl}", "config.seccomp.deny", "expected a list of syscall names"),
    ("seccomp: {deny: [key-ctl]}", "config.seccomp.deny[0]", "not a syscall name"),
    ("seccomp: {deny: [[a]]}", "config.seccomp.deny[0]", "expected a string"),
    ("seccomp: {errno: 99999}", "config.seccomp.errno", "errno"),
    ("seccomp: {errno: 'E PERM'}", "config.seccomp.errno", "errno"),
    ("seccomp: {zzz: x}", "config.seccomp.zzz", "valid: profile, deny, allow, errno"),
    ("seccomp: default", "config.seccomp", "expected a mapping"),
    ("landlock: {enabled: sometimes}", "config.landlock.enabled", "expected a bool"),
    ("landlock: [true]", "config.landlock", "expected a mapping"),
])
def test_seccomp_landlock_errors(line: str, key: str, fragment: str) -> None:
    assert_error(error(with_config("  " + line)), 4, key, fragment)


# ------------------------------------------------------------------------ obsolete keys

def test_obsolete_keys_warn_with_file_line_key() -> None:
    cfg = parse(with_config("  maxage: 10\n  Inherit:\n    - anything: [goes]"))
    assert cfg.warnings == (f"{FILE}:4: config.maxage: obsolete key, ignored (remove it)",
                            f"{FILE}:5: config.inherit: obsolete key, ignored (remove it)")
    assert cfg.settings == config.Settings()


# ------------------------------------------------------------------------ schema errors

SCHEMA_ERRORS = [
    # (name, document, line, key, fragments)
    ("unknown key close", with_config("  share_nett: enabled"), 4, "config.share_nett",
     ["unknown key 'share_nett'", "did you mean share_net?"]),
    ("unknown key case", with_config("  Die_With_Parent: enabled"), 4,
     "config.Die_With_Parent", ["did you mean die-with-parent?"]),
    ("unknown key far", with_config("  zzqqxx: 1"), 4, "config.zzqqxx",
     ["valid: path, ldpath", "share_uts"]),
    ("unknown section", b"header:\n  alias: a\n", 1, "header", ["did you mean headers?"]),
    ("unknown header key", b"headers:\n  alias: a\n  nmae: x\n", 3, "headers.nmae",
     ["did you mean name?"]),
    ("unknown export key", b"headers: {alias: a}\nexports:\n  - {mode: Public, mount: /a,"
     b" pth: /b}\n", 3, "exports[0].pth", ["did you mean path?"]),
    ("unknown environ key", b"headers: {alias: a}\nenviron:\n  - {key: A, vaule: b}\n", 3,
     "environ[0].vaule", ["did you mean value?"]),
    ("unknown cgroup controller", with_config("  cgroups:\n    memory: {max: 1M}"), 5,
     "config.cgroups.memory", ["did you mean mem?"]),
    ("unknown cgroup key", with_config("  cgroups:\n    mem: {maximum: 1M}"), 5,
     "config.cgroups.mem.maximum", ["did you mean max?"]),
    ("bool maybe", with_config("  gpgcheck: maybe"), 4, "config.gpgcheck",
     ["expected a bool (true/false)", "'maybe'"]),
    ("bool list", with_config("  unsafe: [true]"), 4, "config.unsafe",
     ["expected a bool (true/false), got a list"]),
    ("string list", with_config("  hostname: [a, b]"), 4, "config.hostname",
     ["expected a string, got a list"]),
    ("string map", with_config("  chdir: {a: b}"), 4, "config.chdir",
     ["expected a path, got a mapping"]),
    ("int abc", with_config("  verbose: abc"), 4, "config.verbose", ["integer", "'abc'"]),
    ("int negative", with_config("  verbose: -1"), 4, "config.verbose", ["integer"]),
    ("umask decimal", with_config("  umask: 089"), 4, "config.umask", ["octal"]),
    ("umask too big", with_config("  umask: 7777"), 4, "config.umask", ["octal"]),
    ("path map", with_config("  path: {a: b}"), 4, "config.path", ["colon-separated"]),
    ("path nested", with_config("  path:\n    - /a\n    - [/b]"), 6, "config.path[1]",
     ["expected a string, got a list"]),
    ("path empty entry", with_config("  path: [/a, '']"), 4, "config.path[1]",
     ["empty path entry"]),
    ("share bad", with_config("  share_net: enabld"), 4, "config.share_net",
     ["'enabld' is not", "did you mean enabled?"]),
    ("share relative path", with_config("  share_net: proc/1/ns/net"), 4, "config.share_net",
     ["absolute namespace path"]),
    ("share_all path", with_config("  share_all: /proc/1/ns/net"), 4, "config.share_all",
     ["enabled, disabled or unset"]),
    ("tristate bad", with_config("  new-session: sometimes"), 4, "config.new-session",
     ["enabled, disabled or unset"]),
    ("cap unknown", with_config("  capabilities:\n    - {cap: net_admn, add: 1}"), 5,
     "config.capabilities[0].cap", ["unknown capability 'net_admn'",
                                    "did you mean cap_net_admin?"]),
    ("cap add bad", with_config("  capabilities:\n    - {cap: kill, add: 2}"), 5,
     "config.capabilities[0].add", ["expected a bool"]),
    ("cap add missing", with_config("  capabilities:\n    - {cap: kill}"), 5,
     "config.capabilities[0]", ["missing required key 'add'"]),
    ("cap twice", with_config("  capabilities:\n    - {cap: kill, add: 1}\n"
                              "    - {cap: CAP_KILL, add: 0}"), 6,
     "config.capabilities[1].cap", ["listed twice", "line 5"]),
    ("cap not list", with_config("  capabilities: cap_kill"), 4, "config.capabilities",
     ["expected a list of {cap, add}"]),
    ("cap item scalar", with_config("  capabilities: [cap_kill]"), 4,
     "config.capabilities[0]", ["{cap, add}"]),
    ("config not map", b"headers: {alias: a}\nconfig: [a]\n", 2, "config",
     ["expected a mapping, got a list"]),
    ("headers not map", b"headers: a\n", 1, "headers", ["expected a mapping, got 'a'"]),
    ("missing headers", b"config: {}\n", 1, "headers", ["missing required section"]),
    ("missing alias", b"headers:\n  name: x\n", 2, "headers",
     ["missing required key 'alias'"]),
    ("empty headers", b"headers:\nconfig:\n", 1, "headers",
     ["missing required key 'alias'"]),
    ("empty alias", b"headers:\n  alias:\n", 2, "headers.alias", ["a value is required"]),
    ("alias space", b"headers:\n  alias: my app\n", 2, "headers.alias",
     ["'my app' is not a valid alias", "letters, digits"]),
    ("alias slash", b"headers:\n  alias: a/b\n", 2, "headers.alias", ["not a valid alias"]),
    ("alias list", b"headers:\n  alias: [a]\n", 2, "headers.alias", ["got a list"]),
    ("exports not list", b"headers: {alias: a}\nexports: /a\n", 2, "exports",
     ["expected a list of export mappings"]),
    ("export scalar", b"headers: {alias: a}\nexports:\n  - /a\n", 3, "exports[0]",
     ["expected an export mapping, got '/a'"]),
    ("export empty item", b"headers: {alias: a}\nexports:\n  -\n", 3, "exports[0]",
     ["expected an export mapping, got an empty value"]),
    ("export mode bad", b"headers: {alias: a}\nexports:\n  - {mode: Public, mount: /a}\n"
     b"  - {mode: Publik, mount: /b}\n", 4, "exports[1].mode",
     ["'Publik' is not an export mode", "did you mean Public?"]),
    ("export mode missing", b"headers: {alias: a}\nexports:\n  - mount: /a\n", 3,
     "exports[0]", ["missing required key 'mode'"]),
    ("export mount empty", b"headers: {alias: a}\nexports:\n  - mode: Public\n    mount:\n",
     4, "exports[0].mount", ["a value is required"]),
    ("export mount missing", b"headers: {alias: a}\nexports:\n  - {mode: Tmpfs}\n", 3,
     "exports[0]", ["missing required key 'mount'"]),
    ("environ key bad", b"headers: {alias: a}\nenviron:\n  - {key: 1A}\n", 3,
     "environ[0].key", ["variable name", "'1A'"]),
    ("environ key missing", b"headers: {alias: a}\nenviron:\n  - {value: x}\n", 3,
     "environ[0]", ["missing required key 'key'"]),
    ("environ key empty", b"headers: {alias: a}\nenviron:\n  - key:\n", 3,
     "environ[0].key", ["a value is required"]),
    ("environ mode bad", b"headers: {alias: a}\nenviron:\n  - {key: A, mode: Statik}\n", 3,
     "environ[0].mode", ["did you mean Static?"]),
    ("environ value list", b"headers: {alias: a}\nenviron:\n  - {key: A, value: [1]}\n", 3,
     "environ[0].value", ["expected a string, got a list"]),
]


@pytest.mark.parametrize("name, data, line, key, fragments", SCHEMA_ERRORS,
                         ids=[case[0] for case in SCHEMA_ERRORS])
def test_schema_errors(name: str, data: bytes, line: int, key: str,
                       fragments: list[str]) -> None:
    assert_error(error(data), line, key, *fragments)


# ------------------------------------------------------------------------ YAML-level errors

YAML_ERRORS = [
    ("invalid yaml", b"headers:\n  alias: a\n name: b\n", 3, "",
     ["invalid YAML at column 2"]),
    ("unclosed flow", b"headers: {alias: a\n", 2, "headers", ["invalid YAML"]),
    ("duplicate key", b"headers:\n  alias: a\n  alias: b\n", 3, "headers.alias",
     ["duplicate key", "line 2", "line 3"]),
    ("duplicate key case", b"headers:\n  alias: a\nconfig:\n  Share_Net: enabled\n"
     b"  SHARE_NET: disabled\n", 5, "config.SHARE_NET",
     ["first defined as 'Share_Net' at line 4", "again as 'SHARE_NET' at line 5"]),
    ("duplicate section", b"headers: {alias: a}\nHeaders: {alias: b}\n", 2, "Headers",
     ["duplicate key", "line 1"]),
    ("duplicate in export", b"headers: {alias: a}\nexports:\n  - mode: Public\n"
     b"    mount: /a\n    Mount: /b\n", 5, "exports[0].Mount", ["duplicate key"]),
    ("anchor", b"headers:\n  alias: &x a\n", 2, "headers.alias", ["anchor '&x'"]),
    ("anchor on map", b"headers: &h\n  alias: a\n", 1, "headers", ["anchor '&h'"]),
    ("alias", b"headers:\n  alias: a\n  name: *x\n", 3, "headers.name", ["alias '*x'"]),
    ("merge key", b"headers:\n  alias: a\n  <<: {name: b}\n", 3, "headers",
     ["merge keys (<<)"]),
    ("python tag", b"headers:\n  alias: !!python/object:os.system a\n", 2, "headers.alias",
     ["tag", "python/object"]),
    ("str tag", b"headers:\n  alias: !!str a\n", 2, "headers.alias", ["tag"]),
    ("local tag on map", b"headers: !thing\n  alias: a\n", 1, "headers", ["tag '!thing'"]),
    ("complex key", b"headers:\n  alias: a\n  ? [x]\n  : y\n", 3, "headers",
     ["a key must be a plain word"]),
    ("not a mapping list", b"- a\n- b\n", 1, "", ["must be a mapping, not a list"]),
    ("not a mapping scalar", b"just text\n", 1, "", ["must be a mapping, not 'just text'"]),
    ("multiple documents", b"headers: {alias: a}\n---\nheaders: {alias: b}\n", 2, "",
     ["more than one YAML document"]),
    ("empty file", b"", None, "", ["file is empty"]),
    ("comments only", b"# nothing here\n\n", None, "", ["file is empty"]),
    ("bare document marker", b"---\n", None, "", ["file is empty"]),
    ("control character", b"headers:\n  alias: a\n  info: \x07\n", 3, "",
     ["invalid character #x0007"]),
    ("invalid utf-8", b"headers:\n  alias: a\n  info: caf\xe9\n", 3, "",
     ["invalid UTF-8 at byte offset 31", "0xe9"]),
    ("utf-16", "headers:\n  alias: a\n".encode("utf-16"), 1, "",
     ["invalid UTF-8 at byte offset 0"]),
    # A tab in indentation names its own line and key, not the key before it.
    ("tab after a value", b"headers:\n  alias: a\nconfig:\n  hostname: x\n\tchdir: /t\n",
     5, "config.chdir", ["tabs are not allowed for indentation, use spaces"]),
    ("tab below a section", b"headers:\n  alias: a\nconfig:\n\thostname: x\n", 4,
     "config.hostname", ["tabs are not allowed for indentation, use spaces"]),
    ("tab in an export", b"headers: {alias: a}\nexports:\n  - mode: Tmpfs\n    mount: /t\n"
     b"  - mode: Tmpfs\n  \tmount: /u\n", 6, "exports[1].mount",
     ["tabs are not allowed for indentation"]),
    ("tab before an item", b"headers: {alias: a}\nexports:\n\t- mode: Tmpfs\n", 3,
     "exports[0].mode", ["tabs are not allowed for indentation"]),
    ("tab after an item's dash", b"headers: {alias: a}\nexports:\n  -\tmode: Tmpfs\n"
     b"    mount: /t\n", 3, "exports[0].mode", ["tabs are not allowed for indentation"]),
    ("tab in a block scalar", b"headers:\n  alias: a\n  info: |\n    x\n\ty\n", 5,
     "headers.info", ["tabs are not allowed for indentation"]),
]


@pytest.mark.parametrize("name, data, line, key, fragments", YAML_ERRORS,
                         ids=[case[0] for case in YAML_ERRORS])
def test_yaml_errors(name: str, data: bytes, line: int | None, key: str,
                     fragments: list[str]) -> None:
    assert_error(error(data), line, key, *fragments)


def test_utf8_bom_and_non_ascii_accepted() -> None:
    cfg = parse("\ufeffheaders:\n  alias: a\n  info: nœud ✓\n".encode())
    assert cfg.info == "nœud ✓"


def test_billion_laughs_rejected_fast() -> None:
    bomb = ["lol: &l0 lol"]
    for i in range(1, 30):
        bomb.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    data = ("\n".join(bomb) + "\n").encode()
    start = time.perf_counter()
    err = error(data)
    assert time.perf_counter() - start < 0.1
    assert_error(err, 1, "lol", "anchor")


def test_alias_bomb_without_leading_anchor_is_rejected_fast() -> None:
    data = b"headers: {alias: a}\nx: [" + b", ".join([b"*a"] * 100000) + b"]\n"
    start = time.perf_counter()
    err = error(data)
    assert time.perf_counter() - start < 0.1
    assert_error(err, 2, "x[0]", "alias '*a'")


@pytest.mark.parametrize("prefix, opener", [(b"headers: ", b"["), (b"headers: ", b"{a: "),
                                            (b"headers:\n  ", b"- ")])
def test_deep_nesting_is_a_config_error(prefix: bytes, opener: bytes) -> None:
    data = prefix + opener * 100000
    start = time.perf_counter()
    err = error(data)  # neither RecursionError nor a hang
    assert time.perf_counter() - start < 0.5
    assert "nesting deeper than 64 levels" in str(err)
    assert err.key.startswith("headers") and err.key.endswith("...") and len(err.key) < 80


def test_deep_block_nesting_is_a_config_error() -> None:
    data = "".join(" " * i + "a:\n" for i in range(100)).encode()
    assert_error(error(data), 65, "a.a.a.a.a.a.a.a...", "nesting deeper than 64")


def test_nesting_limit_is_exactly_64() -> None:
    def nested(depth: int) -> bytes:   # depth mappings, counting the document's own
        return ("{a: " * depth + "x" + "}" * depth).encode()
    data, _ = parse_yaml_mapping(nested(64), FILE)
    for _ in range(63):
        data = data["a"]
    assert data == {"a": "x"}
    with pytest.raises(ConfigError, match="deeper than 64"):
        parse_yaml_mapping(nested(65), FILE)


# ------------------------------------------------------------------------ files

def test_file_over_limit_rejected(tmp_path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"headers: {alias: a}\n#" + b"x" * (MAX_BYTES - 22) + b"\n")
    assert path.stat().st_size == MAX_BYTES
    assert load_config(path).alias == "a"
    with path.open("ab") as f:
        f.write(b"#")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: file is {MAX_BYTES + 1} bytes, over the")


def test_huge_file_rejected_without_reading(tmp_path) -> None:
    path = tmp_path / "sparse.yaml"
    with path.open("wb") as f:
        f.truncate(8 << 30)       # sparse: reading it would take seconds and 8 GiB
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"file is {8 << 30} bytes, over the"):
        load_config(path)           # the size comes from fstat, before any read
    assert time.perf_counter() - start < 0.1


def test_parse_config_refuses_oversize_bytes() -> None:
    with pytest.raises(ConfigError, match="over the"):
        parse(b"headers: {alias: a}\n#" + b"x" * MAX_BYTES)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_unreadable_paths(tmp_path, kind: str) -> None:
    path = tmp_path / "redpak.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)            # must not block waiting for a writer
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert ("cannot open" if kind == "missing" else "not a regular file") in str(info.value)


def test_load_config_reports_path_and_line(tmp_path) -> None:
    path = tmp_path / "redpak.yaml"
    path.write_bytes(with_config("  gpgcheck: maybe"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:4: config.gpgcheck: expected a bool")


# ------------------------------------------------------------------------ load_yaml_mapping

def test_yaml_mapping_helper(tmp_path) -> None:
    path = tmp_path / ".rednode.yaml"
    path.write_bytes(b"RealPath: /n\nstate: Enable\ninfo:\ntimestamp: 0123\nx: [a, {B: c}]\n")
    data, lines = load_yaml_mapping(path)
    assert data == {"realpath": "/n", "state": "Enable", "info": None, "timestamp": "0123",
                    "x": ["a", {"b": "c"}]}
    assert lines == {"realpath": 1, "state": 2, "info": 3, "timestamp": 4, "x": 5}


@pytest.mark.parametrize("data, fragment", [
    (b"state: Enable\nSTATE: Disable\n", "duplicate key"),
    (b"state: &s Enable\n", "anchor"),
    (b"- a\n", "expected a mapping"),
    (b"", "file is empty"),
    (b"state: \xff\n", "invalid UTF-8"),
])
def test_yaml_mapping_helper_errors(tmp_path, data: bytes, fragment: str) -> None:
    path = tmp_path / ".rednode.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_yaml_mapping(path)
    assert str(info.value).startswith(str(path))


def test_yaml_mapping_helper_size_limit(tmp_path) -> None:
    path = tmp_path / ".rednode.yaml"
    path.write_bytes(b"state: Enable\n" + b"#" * 100)
    with pytest.raises(ConfigError, match="over the 64-byte limit"):
        load_yaml_mapping(path, max_bytes=64)


# ------------------------------------------------------------------------ pure-Python fallback

@pytest.fixture
def pure_python_parser(monkeypatch):
    import yaml

    config._Yaml.load()
    monkeypatch.setattr(config._Yaml, "parser", yaml.SafeLoader)
    monkeypatch.setattr(config._Yaml, "c_parser", False)


@pytest.mark.usefixtures("pure_python_parser")
def test_pure_python_parser_gives_same_results() -> None:
    assert parse(FULL).settings == parse_config(FULL, FILE).settings
    cfg = parse(FULL)
    assert cfg.settings.umask == 0o27 and cfg.settings.hostname == "no"
    assert_error(error(b"headers:\n  alias: &x a\n"), 2, "headers.alias", "anchor")
    assert_error(error(b"headers:\n  alias: a\n  ALIAS: b\n"), 3, "headers.ALIAS",
                 "duplicate key")
    assert "deeper than 64" in str(error(b"headers: " + b"[" * 100000))
    assert_error(error(b"headers:\n  alias: a\n  info: \x07\n"), 3, "",
                 "invalid character")


# ------------------------------------------------------------------------ cost

def test_fifty_exports_parse_quickly() -> None:
    exports = "".join(f"  - mode: Restricted\n    mount: /nodes/n{i}/usr\n"
                      f"    path: $NODE_PATH/usr{i}\n    info: export {i}\n" for i in range(50))
    data = (b"headers:\n  alias: app\nconfig:\n  umask: 027\n  share_all: disabled\n"
            b"exports:\n" + exports.encode())
    assert len(parse(data).exports) == 50
    times = []
    for _ in range(21):
        start = time.perf_counter()
        parse(data)
        times.append(time.perf_counter() - start)
    # ~0.5 ms on a laptop; the bound only catches gross regressions (e.g. quadratic work).
    assert sorted(times)[10] < 0.01


def test_import_is_lean() -> None:
    code = ("import sys, redpak.config as c\n"
            "assert 'yaml' not in sys.modules, 'yaml imported at import time'\n"
            "c.parse_config(b'headers: {alias: a}', 'f')\n"
            "assert 'difflib' not in sys.modules, 'difflib imported without an error'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
