# Tests for redpak.node: status files, family discovery, loading nodes (legacy names
# included), walking trees, creating nodes from templates, and the shipped templates.

import os
import shutil
from pathlib import Path

import pytest

from redpak import node as nodemod
from redpak.config import load_config
from redpak.errors import ConfigError, NodeError
from redpak.family import merge_family
from redpak.model import ExportMode, NodeState, NodeStatus
from redpak.node import (
    create_node,
    find_family,
    find_tree,
    load_family,
    load_node,
    normalize_path,
    read_status,
    render_template,
    resolve_template,
    set_state,
    write_status,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trees"
TEMPLATES = Path(nodemod.__file__).resolve().parent / "templates"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def make_node(path: Path, alias: str | None = None, config: str | None = None,
              state: str = "Enable", legacy: bool = False, admin: str | None = None) -> Path:
    """A node written by hand (no templates, no rpm): status file and configs."""
    (path / "etc").mkdir(parents=True, exist_ok=True)
    (path / ".rednode.yaml").write_text(
        f"realpath: {path}\ninfo: test\ntimestamp: 1700000000000\nstate: {state}\n")
    text = config if config is not None else f"headers:\n  alias: {alias or path.name}\n"
    (path / "etc" / ("redpack.yaml" if legacy else "redpak.yaml")).write_text(text)
    if admin is not None:
        (path / "etc" / ("redpack-admin.yaml" if legacy else "redpak-admin.yaml")).write_text(
            admin)
    return path


@pytest.fixture
def clean_home(tmp_path, monkeypatch):
    """HOME in an empty directory so a stray ~/.rpmdb would be seen."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("REDNODE_TEMPLATE_DIR", raising=False)
    return home


# --------------------------------------------------------------------------- discovery

def test_normalize_path_makes_absolute_and_lexically_normal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_path("a/b/") == f"{tmp_path}/a/b"
    assert normalize_path("./a/./b/../c") == f"{tmp_path}/a/c"
    assert normalize_path("//x//y/") == "/x/y"
    with pytest.raises(NodeError):
        normalize_path("")


def test_node_reached_through_a_symlink_keeps_its_real_family(tmp_path):
    """/srv/app -> sys/app: by the link's path the system node above would be lost (the
    launch then fails with "program not found"); refused, naming the real path. A link to
    a directory above a family changes nothing and is accepted."""
    make_node(tmp_path / "sys")
    make_node(tmp_path / "sys" / "app")
    (tmp_path / "applink").symlink_to(tmp_path / "sys" / "app")
    (tmp_path / "syslink").symlink_to(tmp_path / "sys")
    with pytest.raises(NodeError) as info:
        find_family(str(tmp_path / "applink"))
    text = str(info.value)
    assert text.startswith(f"{tmp_path}/applink: this path reaches the node through a "
                           f"symbolic link, to {tmp_path}/sys/app, whose family is "
                           f"{tmp_path}/sys > {tmp_path}/sys/app"), text
    assert text.endswith(f"give the node's real path, {tmp_path}/sys/app")
    assert find_family(str(tmp_path / "syslink" / "app")) == [
        str(tmp_path / "syslink"), str(tmp_path / "syslink" / "app")]


def test_find_family_root_first_skipping_non_node_dirs(tmp_path):
    make_node(tmp_path / "sys")
    make_node(tmp_path / "sys" / "plain" / "deeper" / "app")
    make_node(tmp_path / "sys" / "plain" / "deeper" / "app" / "leaf")
    family = find_family(str(tmp_path / "sys" / "plain" / "deeper" / "app" / "leaf"))
    assert family == [f"{tmp_path}/sys", f"{tmp_path}/sys/plain/deeper/app",
                      f"{tmp_path}/sys/plain/deeper/app/leaf"]


def test_find_family_relative_trailing_slash_and_dotdot(tmp_path, monkeypatch):
    make_node(tmp_path / "sys")
    make_node(tmp_path / "sys" / "app")
    (tmp_path / "sys" / "other").mkdir()
    monkeypatch.chdir(tmp_path / "sys" / "other")
    expected = [f"{tmp_path}/sys", f"{tmp_path}/sys/app"]
    assert find_family("../app/") == expected
    assert find_family("../app/.") == expected
    monkeypatch.chdir(tmp_path)
    assert find_family("sys/other/../app") == expected


def test_find_family_leaf_must_be_a_node(tmp_path):
    make_node(tmp_path / "sys")
    (tmp_path / "sys" / "plain").mkdir()
    with pytest.raises(NodeError, match=r"plain: not a node .*redconf create"):
        find_family(str(tmp_path / "sys" / "plain"))
    with pytest.raises(NodeError, match="no such node directory"):
        find_family(str(tmp_path / "missing"))


def test_find_family_never_looks_at_the_root_directory(tmp_path, monkeypatch):
    make_node(tmp_path / "leaf")
    looked = []
    real = nodemod.is_node
    monkeypatch.setattr(nodemod, "is_node", lambda p: looked.append(p) or real(p))
    find_family(str(tmp_path / "leaf"))
    assert "/" not in looked
    assert os.path.dirname(str(tmp_path)) in looked


def test_find_tree_lists_nodes_parents_first_without_following_symlinks(tmp_path):
    make_node(tmp_path / "b")
    make_node(tmp_path / "a" / "x" / "n1")
    make_node(tmp_path / "a" / "x" / "n1" / "usr" / "n2")
    outside = make_node(tmp_path.parent / f"{tmp_path.name}-outside")
    try:
        (tmp_path / "a" / "link").symlink_to(outside)
        (tmp_path / "a" / "loop").symlink_to(tmp_path)
        assert find_tree(str(tmp_path)) == [f"{tmp_path}/a/x/n1", f"{tmp_path}/a/x/n1/usr/n2",
                                            f"{tmp_path}/b"]
        assert find_tree(str(tmp_path / "a" / "x" / "n1")) == [
            f"{tmp_path}/a/x/n1", f"{tmp_path}/a/x/n1/usr/n2"]
    finally:
        shutil.rmtree(outside)
    with pytest.raises(NodeError, match="no such directory"):
        find_tree(str(tmp_path / "nope"))


def test_find_tree_reports_unreadable_directories(tmp_path, monkeypatch):
    make_node(tmp_path / "a")
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(nodemod.os, "scandir", scandir)
    errors = []
    assert find_tree(str(tmp_path), onerror=lambda p, e: errors.append(p)) == [
        f"{tmp_path}/a"]
    assert errors == [f"{tmp_path}/locked"]


# --------------------------------------------------------------------------- status file

def test_status_roundtrip_and_atomic_write(tmp_path):
    status = NodeStatus(realpath="/some/where: odd", state=NodeState.DISABLE,
                        info="a # comment-like info", timestamp=1234567890123)
    write_status(str(tmp_path), status)
    assert read_status(str(tmp_path)) == status
    assert [p.name for p in tmp_path.iterdir()] == [".rednode.yaml"]   # no temp file left


@pytest.mark.parametrize("text,state", [
    ("state: enable\n", NodeState.ENABLE),
    ("STATE: DISABLE\n", NodeState.DISABLE),
    ("state: unknown\n", NodeState.UNKNOWN),
    ("state: Error\n", NodeState.ERROR),
])
def test_status_state_is_case_insensitive(tmp_path, text, state):
    (tmp_path / ".rednode.yaml").write_text("realpath: /x\n" + text)
    assert read_status(str(tmp_path)).state is state


@pytest.mark.parametrize("text,key,line", [
    ("realpath: /x\nstate: Enabled\n", "state", 2),
    ("realpath: /x\n", "state", None),
    ("state: Enable\ntimestamp: soon\n", "timestamp", 2),
    ("state: Enable\nstate: Disable\n", "", 2),
    ("state: &a Enable\ninfo: *a\n", "", 1),
    ("- state\n", "", 1),
])
def test_status_invalid_names_file_key_and_line(tmp_path, text, key, line):
    (tmp_path / ".rednode.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        read_status(str(tmp_path))
    err = info.value
    assert str(err.path).endswith(".rednode.yaml")
    assert str(tmp_path) in str(err)
    if key:
        assert err.key == key
    assert err.line == line


@pytest.mark.parametrize("text", ["", "# nothing\n", "realpath: /x\n"])
def test_empty_status_says_what_a_status_file_needs(tmp_path, text):
    """Not the hint of a node config ("headers: alias"): the status file needs a state."""
    (tmp_path / ".rednode.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        read_status(str(tmp_path))
    assert "headers" not in str(info.value)
    assert "needs at least `state: Enable`" in str(info.value)


def test_status_missing_is_node_error(tmp_path):
    with pytest.raises(NodeError, match="not a node"):
        read_status(str(tmp_path))


def test_set_state_refreshes_realpath_and_timestamp(tmp_path):
    make_node(tmp_path / "n")
    new = set_state(str(tmp_path / "n"), NodeState.DISABLE)
    assert new.state is NodeState.DISABLE and new.info == "test"
    assert new.realpath == os.path.realpath(tmp_path / "n")
    assert new.timestamp > 1700000000000
    assert read_status(str(tmp_path / "n")) == new


# --------------------------------------------------------------------------- loading

def test_load_node_reads_status_and_both_configs(tmp_path):
    path = make_node(tmp_path / "n", alias="nice",
                     admin="headers:\n  alias: admin-of-nice\n")
    node = load_node(str(path) + "/")
    assert node.path == str(path)
    assert node.alias == "nice"
    assert node.admin is not None and node.admin.alias == "admin-of-nice"
    assert node.status.state is NodeState.ENABLE


def test_load_node_legacy_file_names(tmp_path):
    path = make_node(tmp_path / "old", legacy=True, admin="headers:\n  alias: adm\n")
    node = load_node(str(path))
    assert node.config.file.endswith("etc/redpack.yaml")
    assert node.admin is not None and node.admin.file.endswith("etc/redpack-admin.yaml")


def test_load_node_prefers_new_name_over_legacy(tmp_path):
    path = make_node(tmp_path / "n", alias="new")
    (path / "etc" / "redpack.yaml").write_text("headers:\n  alias: old\n")
    assert load_node(str(path)).alias == "new"


def test_load_node_without_config_names_the_path(tmp_path):
    path = make_node(tmp_path / "n")
    (path / "etc" / "redpak.yaml").unlink()
    with pytest.raises(NodeError, match=r"etc/redpak\.yaml is missing"):
        load_node(str(path))


def test_load_node_admin_is_optional(tmp_path):
    assert load_node(str(make_node(tmp_path / "n"))).admin is None


def test_load_node_invalid_config_is_config_error(tmp_path):
    path = make_node(tmp_path / "n", config="headers:\n  alias: bad alias!\n")
    with pytest.raises(ConfigError) as info:
        load_node(str(path))
    assert "etc/redpak.yaml" in str(info.value)


def test_load_family_of_fixture_tree(tmp_path):
    tree = tmp_path / "family"
    shutil.copytree(FIXTURES / "family", tree)
    nodes = load_family(str(tree / "system" / "plain" / "app" / "tool"))
    assert [n.alias for n in nodes] == ["system", "app", "tool"]
    assert nodes[1].config.file.endswith("redpack.yaml")


# --------------------------------------------------------------------------- creation

def _entries(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_create_leaf_defaults(tmp_path, clean_home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    node = create_node("apps/myapp/")
    path = tmp_path / "apps" / "myapp"
    assert node.path == str(path)
    assert node.alias == "myapp"
    assert node.admin is not None and node.admin.alias == "admin-of-myapp"
    assert node.config.name and node.config.name == node.admin.name
    import re
    assert re.fullmatch(UUID_RE, node.config.name)
    assert node.config.info.startswith("Node created by ")
    assert node.status.state is NodeState.ENABLE
    assert node.status.realpath == os.path.realpath(path)
    assert abs(node.status.timestamp / 1000 - __import__("time").time()) < 60
    # leaf template content survived: comments and entries, headers replaced
    text = (path / "etc" / "redpak.yaml").read_text()
    assert "# redpak template: leaf model" in text
    assert "template-leaf" not in text
    assert node.config.settings.rpmdir == "$NODE_PATH/var/lib/rpm"


def test_create_initialises_rpm_db_inside_the_node_only(tmp_path, clean_home):
    before = _entries(tmp_path)
    create_node(str(tmp_path / "n"))
    db = tmp_path / "n" / "var" / "lib" / "rpm"
    names = {p.name for p in db.iterdir()}
    assert "rpmdb.sqlite" in names or "Packages" in names, names
    assert not any(clean_home.iterdir()), "rpm wrote into $HOME (~/.rpmdb?)"
    outside = {e for e in _entries(tmp_path) if e != "n" and not e.startswith("n/")}
    assert outside == before
    # and the database is really usable by rpm
    import subprocess
    out = subprocess.run(["rpm", "--dbpath", str(db), "-qa"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""


def test_create_refuses_percent_in_path(tmp_path, clean_home):
    # rpm would expand %{_tmppath} in its --dbpath and create the database elsewhere.
    with pytest.raises(NodeError, match="cannot contain '%'"):
        create_node(str(tmp_path / "a%{_tmppath}b"), alias="pct")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_create_without_rpm_is_a_clear_error_and_leaves_nothing(tmp_path, clean_home,
                                                                 monkeypatch):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(NodeError, match=r"`rpm` program is not installed"):
        create_node(str(tmp_path / "n"))
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("model,rpmdir", [("root", "/var/lib/rpm"),
                                          ("full", "$NODE_PATH/var/lib/rpm")])
def test_create_models(tmp_path, clean_home, model, rpmdir):
    node = create_node(str(tmp_path / model), model=model)
    assert node.config.settings.rpmdir == rpmdir
    assert f"{model} model" in Path(node.config.file).read_text()


def test_create_explicit_alias_and_invalid_alias(tmp_path, clean_home):
    assert create_node(str(tmp_path / "d1"), alias="my+app@x:1").alias == "my+app@x:1"
    with pytest.raises(NodeError, match="not a valid node alias"):
        create_node(str(tmp_path / "d2"), alias="bad alias")
    assert not (tmp_path / "d2").exists()
    with pytest.raises(NodeError, match=r"directory name 'has\.dot' is not a valid alias"):
        create_node(str(tmp_path / "has.dot"))


def test_create_over_existing_config_is_refused(tmp_path, clean_home):
    create_node(str(tmp_path / "n"))
    before = (tmp_path / "n" / "etc" / "redpak.yaml").read_text()
    with pytest.raises(NodeError, match="already exists.*--update"):
        create_node(str(tmp_path / "n"), model="root")
    assert (tmp_path / "n" / "etc" / "redpak.yaml").read_text() == before


def test_create_over_legacy_config_is_refused(tmp_path, clean_home):
    make_node(tmp_path / "old", legacy=True)
    with pytest.raises(NodeError, match=r"redpack\.yaml: a config already exists"):
        create_node(str(tmp_path / "old"))


def test_update_rewrites_configs_keeping_headers(tmp_path, clean_home):
    first = create_node(str(tmp_path / "n"), alias="keepme")
    set_state(str(tmp_path / "n"), NodeState.DISABLE, info="kept info")
    updated = create_node(str(tmp_path / "n"), model="root", update=True)
    assert (updated.alias, updated.config.name, updated.config.info) == (
        "keepme", first.config.name, first.config.info)
    assert updated.admin.alias == "admin-of-keepme"
    assert updated.config.settings.rpmdir == "/var/lib/rpm"     # from the root template
    assert updated.status.state is NodeState.DISABLE            # state is not reset
    assert updated.status.info == "kept info"


def test_update_of_legacy_node_keeps_headers_and_retires_legacy_name(tmp_path, clean_home):
    path = make_node(tmp_path / "old", config="headers:\n  alias: legacy\n  name: n-1\n"
                     "  info: from 2.x\n", legacy=True)
    node = create_node(str(path), update=True)
    assert (node.alias, node.config.name, node.config.info) == ("legacy", "n-1", "from 2.x")
    assert node.config.file.endswith("etc/redpak.yaml")
    assert not (path / "etc" / "redpack.yaml").exists()


def test_update_in_a_directory_whose_name_is_no_alias(tmp_path, clean_home):
    first = create_node(str(tmp_path / "has.dot"), alias="fine")
    assert create_node(str(tmp_path / "has.dot"), update=True).alias == first.alias


def test_create_failing_late_leaves_no_half_node(tmp_path, clean_home, monkeypatch):
    def fail(*args):
        raise NodeError("disk full")
    monkeypatch.setattr(nodemod, "write_status", fail)
    with pytest.raises(NodeError, match="disk full"):
        create_node(str(tmp_path / "a" / "n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_update_with_explicit_alias_changes_only_the_alias(tmp_path, clean_home):
    first = create_node(str(tmp_path / "n"))
    node = create_node(str(tmp_path / "n"), alias="renamed", update=True)
    assert node.alias == "renamed" and node.config.name == first.config.name
    assert node.admin.alias == "admin-of-renamed"


def test_update_of_a_non_node_is_refused(tmp_path, clean_home):
    (tmp_path / "plain").mkdir()
    with pytest.raises(NodeError, match="not a node, nothing to update"):
        create_node(str(tmp_path / "plain"), update=True)


def test_create_with_template_file_and_by_name(tmp_path, clean_home):
    custom = tmp_path / "custom.yaml"
    custom.write_text("# my comment stays\nheaders:\n  alias: x\n  # dropped\n\n"
                      "config:\n  hostname: custom-host\n")
    node = create_node(str(tmp_path / "a"), config=str(custom), config_admin="root-admin")
    assert node.config.settings.hostname == "custom-host"
    text = Path(node.config.file).read_text()
    assert text.startswith("# my comment stays\nheaders:\n  alias: \"a\"\n")
    assert "# dropped" not in text and "\n\nconfig:\n" in text
    assert node.admin.exports[0].mount == "$LEAF_PATH"          # root-admin by name
    node = create_node(str(tmp_path / "b"), config="full-normal")
    assert "full model" in Path(node.config.file).read_text()


def test_templates_dir_argument_and_environment(tmp_path, clean_home, monkeypatch):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "mine-normal.yaml").write_text("headers:\n  alias: t\nconfig:\n  verbose: 3\n")
    node = create_node(str(tmp_path / "a"), model="mine", templates=str(tdir))
    assert node.config.settings.verbose == 3 and node.admin is None   # admin optional
    monkeypatch.setenv("REDNODE_TEMPLATE_DIR", str(tdir))
    assert create_node(str(tmp_path / "b"), model="mine").config.settings.verbose == 3
    with pytest.raises(NodeError, match=r"no template 'leaf' in .*available: mine-normal"):
        create_node(str(tmp_path / "c"))


@pytest.mark.parametrize("headers", ["headers:\n  alias: x\n",
                                     "# c\nheaders:\n  alias: x\n  name: y\n  a: 1\n  b: 2\n"])
def test_invalid_template_names_template_file_and_line(tmp_path, clean_home, headers):
    bad = tmp_path / "bad.yaml"
    bad.write_text(headers + "config:\n  share_nett: enabled\n")
    line = headers.count("\n") + 2
    with pytest.raises(NodeError) as info:
        create_node(str(tmp_path / "n"), config=str(bad))
    assert f"{bad}:{line}: invalid template: config.share_nett" in str(info.value)
    assert "did you mean share_net" in str(info.value)
    assert not (tmp_path / "n").exists()


def test_template_without_block_headers_is_refused(tmp_path, clean_home):
    bad = tmp_path / "flow.yaml"
    bad.write_text("{headers: {alias: x}}\n")
    with pytest.raises(NodeError, match="block-style `headers:`"):
        create_node(str(tmp_path / "n"), config=str(bad))


def test_missing_template_file(tmp_path, clean_home):
    with pytest.raises(NodeError, match="no such template file"):
        create_node(str(tmp_path / "n"), config="./nope.yaml")
    with pytest.raises(NodeError, match="not a valid template name"):
        resolve_template("..", "normal", str(TEMPLATES))


def test_render_template_quotes_header_values(tmp_path):
    tpl = tmp_path / "t.yaml"
    tpl.write_text("Headers:   # c\n  alias: a\nexports: []\n")
    out = render_template(str(tpl), nodemod._Headers("@x", "yes", 'say "hi": #1'))
    import yaml
    data = yaml.safe_load(out)
    assert data["headers"] == {"alias": "@x", "name": "yes", "info": 'say "hi": #1'}
    assert data["exports"] == []


# --------------------------------------------------------------------------- shipped templates

@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.yaml")))
def test_shipped_template_loads(name):
    cfg = load_config(TEMPLATES / name)
    assert cfg.alias


def test_shipped_templates_are_complete():
    names = {p.name for p in TEMPLATES.glob("*.yaml")}
    assert names == {f"{m}-{k}.yaml" for m in ("root", "leaf", "full")
                     for k in ("normal", "admin")}


def test_root_template_contents():
    cfg = load_config(TEMPLATES / "root-normal.yaml")
    s = cfg.settings
    assert (s.path, s.ldpath, s.umask, s.hostname) == (("/bin",), ("/lib64",), 0o027,
                                                         "$LEAF_ALIAS")
    mounts = {e.mount: e for e in cfg.exports}
    assert mounts["/bin"].path == "/usr/bin" and mounts["/bin"].mode.readonly
    assert mounts["/etc/passwd"].mode is ExportMode.USERDB
    assert mounts["/home/$LEAF_ALIAS"].mode is ExportMode.SYMLINK
    assert {e.key for e in cfg.environ} == {"PS1", "HOME", "SHELL_SESSION_ID"}


@pytest.mark.parametrize("admin", [False, True])
def test_root_and_leaf_templates_merge(tmp_path, clean_home, admin):
    create_node(str(tmp_path / "sys"), model="root")
    create_node(str(tmp_path / "sys" / "app"))
    family = merge_family(load_family(str(tmp_path / "sys" / "app")), admin=admin)
    assert family.warnings == ()
    mounts = {s.value.mount: s.value.mode for s in family.exports}
    assert mounts["/var/lib/rpm"] is (ExportMode.PRIVATE if admin
                                        else ExportMode.PRIVATE_RESTRICTED)
    assert ("$LEAF_PATH" in mounts) is admin
    assert family.rpmdir.value == "$NODE_PATH/var/lib/rpm"


def test_create_writes_rpm_macros_pointing_inside_the_node(tmp_path):
    """rpm run inside a node must find the node's database (Debian defaults to ~/.rpmdb)."""
    from redpak.node import RPM_MACROS, create_node
    create_node(str(tmp_path / "sys"), model="root")
    text = (tmp_path / "sys" / RPM_MACROS).read_text()
    assert "%_dbpath /var/lib/rpm" in text
    root_tpl = (tmp_path / "sys" / "etc" / "redpak.yaml").read_text()
    assert "mount: /etc/rpm" in root_tpl
