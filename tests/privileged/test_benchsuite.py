"""`redpak-bench run --quick` for real on this machine (real nodes, launches, cgroups,
packages built with rpmbuild), then `report` and `check` on its result: the plots hold the
values of the JSON, `check` passes against the result itself and fails on a regression."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
if os.geteuid() != 0:
    pytest.skip("redpak-bench run needs root (namespaces, cgroups, rpm into nodes)",
                allow_module_level=True)

from redpak.benchsuite import schema, stats  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
BENCH = Path(sys.executable).parent / "redpak-bench"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One quick run for the whole module: (result path, parsed result, stderr)."""
    assert BENCH.exists(), "pip install must install the redpak-bench console script"
    out = tmp_path_factory.mktemp("bench") / "result.json"
    r = bench("run", "--quick", "-o", str(out), "--label", "this machine")
    assert r.returncode == 0, r.stderr
    return out, json.loads(out.read_text()), r.stderr


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    path, _, _ = run
    html = tmp_path_factory.mktemp("report") / "report.html"
    r = bench("report", str(path), "-o", str(html))
    assert r.returncode == 0, r.stderr
    assert html.is_file()
    text = html.read_text()
    plots = {}
    for m in re.finditer(r"<svg.*?</svg>", text, re.S):
        root = ET.fromstring(m.group(0))
        plots[root.get("id")] = root
    return text, plots


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-5, abs=1e-9)


def test_result_is_valid_and_describes_this_machine(run):
    _, doc, _ = run
    assert schema.validate(doc) == []
    m = doc["machine"]
    assert m["arch"] == platform.machine() and m["kernel"] == platform.release()
    assert m["cores"] == os.cpu_count()
    assert m["cgroups"] in ("v1", "v2", "hybrid")
    lsm = Path("/sys/kernel/security/lsm")
    if lsm.exists():
        assert m["lsms"] == [x for x in lsm.read_text().strip().split(",") if x]
    elif tuple(int(x) for x in re.findall(r"\d+", platform.release())[:2]) >= (6, 8):
        assert "capability" in m["lsms"]        # from lsm_list_modules(2)
    assert doc["label"] == "this machine" and doc["quick"] is True


def test_progress_goes_to_stderr(run):
    _, doc, err = run
    for section in ("latency", "exports", "memory", "controls", "packages", "throughput"):
        assert f"] {section}:" in err
        assert section in doc, [s for s in doc["skipped"] if s["what"] == section]


def test_latency_of_redpak_and_peers(run):
    _, doc, _ = run
    cmds = doc["latency"]["commands"]
    for name in ("redwrap 2-level cached", "redwrap 3-level cached", "redwrap 2-level cold",
                 "redwrap 3-level cold", "Node.run 2-level", "fork+exec"):
        c = cmds[name]
        assert c["n"] == len(c["samples"]) >= 5
        assert close(c["median"], stats.median(c["samples"]))
        assert close(c["p95"], stats.percentile(c["samples"], 95))
        if name != "fork+exec":                 # redpak's own: a figure `check` compares
            assert c["kind"] == "redpak"
            assert doc["figures"][f"latency.{name}.median"]["value"] == c["median"]
    skipped = " ".join(s["what"] for s in doc["skipped"])
    for peer in ("bwrap", "unshare -m -p -i -u -f", "crun"):
        assert peer in cmds or peer.split()[0] in skipped, f"{peer}: neither measured nor skipped"
    if "bwrap" in cmds:
        assert close(doc["latency"]["ratios"]["redwrap/bwrap"],
                     cmds["redwrap 2-level cached"]["median"] / cmds["bwrap"]["median"])


def test_export_fit_is_the_least_squares_line_of_the_points(run):
    _, doc, _ = run
    row = doc["exports"]["tools"]["redwrap"]
    assert row["counts"] == doc["exports"]["counts"] and max(row["counts"]) == 1000
    fit = stats.linear_fit(row["counts"], row["median_ms"])
    assert close(doc["exports"]["fit"]["redwrap"]["us_per_export"], fit["slope"] * 1000)
    # linearity: the marginal cost per segment, the last one a figure with the fit's r²
    segs = doc["exports"]["fit"]["redwrap"]["segments"]
    pairs = list(zip(row["counts"], row["median_ms"]))
    assert [(s["from"], s["to"]) for s in segs] == [(a, b) for (a, _), (b, _) in
                                                    zip(pairs, pairs[1:])]
    (a, ma), (b, mb) = pairs[-2:]
    assert close(segs[-1]["us_per_export"], (mb - ma) / (b - a) * 1000)
    assert close(doc["figures"]["exports.redwrap.marginal_us_per_export"]["value"],
                 segs[-1]["us_per_export"])
    assert close(doc["figures"]["exports.redwrap.r2"]["value"], fit["r2"])


def test_summary_prints_the_goals_beside_the_figures(run):
    _, doc, err = run
    for name, goal in (("exports.redwrap.us_per_export", "≤ 10"),
                       ("exports.redwrap.marginal_us_per_export", "≤ 10"),
                       ("latency.redwrap 2-level cold.median", "≤ 80")):
        fig = doc["figures"][name]
        assert fig["goal"] == schema.GOALS[name]
        line = next(line for line in err.splitlines() if line.strip().startswith(name + " "))
        met = "met" if fig["value"] <= fig["goal"] else "MISSED"
        assert line.endswith(f"goal {goal} {met}"), line
    if "ratio.redwrap/unshare" in doc["figures"]:
        assert doc["figures"]["ratio.redwrap/unshare"]["goal"] == 1.3
        assert any(line.strip().startswith("ratio.redwrap/unshare ") and "goal ≤ 1.3" in line
                   for line in err.splitlines())
    assert "exports.redwrap linearity: 0→250" in err


def test_memory_sharing_claim_holds(run):
    """20 nodes running the host's binary and library cost less than 20 private copies."""
    _, doc, _ = run
    mem = doc["memory"]
    share = mem["sharing"]
    assert share["nodes"] == 20 and share["files"]
    assert 0 < share["shared_total_kib"] < share["copies_total_kib"]
    assert mem["launcher_pss_kib"]["redwrap"] > 0 and mem["launcher_pss_per_node_kib"] > 0


def test_packages_and_throughput_measured(run):
    _, doc, _ = run
    for n in ("1", "100"):
        assert doc["packages"]["sets"][n]["redwrap-dnf"]["n"] >= 1
        assert "rpm -i" in doc["packages"]["sets"][n]
    assert set(doc["throughput"]["launches_per_s"]) >= {"Node.run", "redwrap"}
    assert doc["controls"]["variants"].keys() >= {"base", "cgroups", "seccomp", "landlock"}


def test_report_plots_hold_the_values_of_the_result(run, page):
    _, doc, _ = run
    text, plots = page
    assert "<script" not in text and "src=" not in text
    assert set(plots) >= {"plot-latency", "plot-ratios", "plot-exports", "plot-memory",
                          "plot-controls", "plot-packages", "plot-throughput"}
    dist = {g.get("data-label"): g for g in plots["plot-latency"].iter(f"{SVG}g")
            if g.get("class") == "dist"}
    for name, c in doc["latency"]["commands"].items():
        assert close(float(dist[name].get("data-median")), c["median"])
        assert close(float(dist[name].get("data-p95")), c["p95"])
    points = {(c.get("data-series"), float(c.get("data-x"))): float(c.get("data-y"))
              for c in plots["plot-exports"].iter(f"{SVG}circle")}
    for tool, row in doc["exports"]["tools"].items():
        for x, y in zip(row["counts"], row["median_ms"]):
            assert close(points[(tool, x)], y)

    def bars(plot):
        return {g.get("data-group"): float(g.get("data-value"))
                for g in plots[plot].iter(f"{SVG}g") if g.get("class") == "bar"}
    for name, value in doc["latency"]["ratios"].items():
        assert close(bars("plot-ratios")[name], value)
    memory = bars("plot-memory")
    assert close(memory["launcher PSS, one node: redwrap"],
                 doc["memory"]["launcher_pss_kib"]["redwrap"])
    assert close(memory["program PSS per node, 20 copies"],
                 doc["memory"]["sharing"]["copies_total_kib"] / 20)
    for name, v in doc["controls"]["variants"].items():
        assert close(bars("plot-controls")[name], v["median"])
    for tool, v in doc["throughput"]["launches_per_s"].items():
        assert close(bars("plot-throughput")[f"{tool}, 8 concurrent"], v)
    assert doc["machine"]["cpu"] in text and doc["machine"]["kernel"] in text


def test_check_passes_against_itself_and_fails_on_a_regression(run, tmp_path):
    path, doc, _ = run
    same = bench("check", str(path), "--baseline", str(path))
    assert same.returncode == 0, same.stdout + same.stderr
    doctored = json.loads(json.dumps(doc))
    slow = "latency.redwrap 2-level cached.median"
    doctored["figures"][slow]["value"] *= 2
    doctored["figures"]["throughput.redwrap.launches_per_s"]["value"] /= 2
    bad = tmp_path / "doctored.json"
    bad.write_text(json.dumps(doctored))
    r = bench("check", str(bad), "--baseline", str(path))
    assert r.returncode == 1
    assert f"REGRESSION {slow}" in r.stdout
    assert "REGRESSION throughput.redwrap.launches_per_s" in r.stdout
    # the same change within a 150% tolerance is no regression
    assert bench("check", str(bad), "--baseline", str(path), "--tolerance", "150").returncode == 0


def busybox_bin(tmp_path: Path) -> Path:
    """A directory of busybox tools only, to be the whole PATH."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox is not installed (tools/setup.sh installs busybox-static)")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("sh", "sleep", "true", "unshare", "cat"):
        (tools / name).symlink_to(busybox)
    return tools


def test_runs_with_only_redpak_and_busybox_tools(tmp_path):
    """A board with redpak (and the rpm it needs), python3 and busybox only: the peers
    are skipped with their reason, redpak's own figures are measured."""
    tools = busybox_bin(tmp_path)
    (tools / "rpm").symlink_to("/usr/bin/rpm")
    out = tmp_path / "r.json"
    env = dict(os.environ, PATH=f"{tools}:{BENCH.parent}")
    r = subprocess.run([str(BENCH), "run", "--quick", "--only", "latency,packages", "-o",
                        str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = schema.load(str(out))
    skipped = {s["what"]: s["reason"] for s in doc["skipped"]}
    assert skipped["bwrap"] == "bwrap is not installed (not found in PATH)"
    assert skipped["crun"] == "crun is not installed (not found in PATH)"
    assert skipped["packages"].startswith("rpmbuild is not installed")
    for what, reason in skipped.items():
        assert f"skipped {what}: {reason}" in r.stderr
    cmds = doc["latency"]["commands"]
    assert {"redwrap 2-level cached", "redwrap 2-level cold", "unshare -m -p -i -u -f"} <= set(cmds)
    assert "bwrap" not in cmds and "packages" not in doc


def test_cached_launches_are_verified_to_skip_python(tmp_path):
    """The "cached" figures come from launches that cannot have taken the cold path: with
    no plan cache (its directory cannot be made), the suite refuses to call them cached."""
    from redpak.benchsuite.runner import Progress
    from redpak.benchsuite.sections import Context
    from redpak.benchsuite.harness import Skip

    tmp_path.chmod(0o755)
    ctx = Context(str(tmp_path), True, Progress(quiet=True))
    app = ctx.family(2)
    assert ctx.cached_cmd(app, ["/bin/true"]).argv[-1] == "/bin/true"
    ctx.env["REDPAK_CACHE_DIR"] = "/dev/null/cache"      # nowhere to cache a plan
    with pytest.raises(Skip, match="not used from the cache"):
        ctx.cached_cmd(app, ["/bin/true"])


def test_run_that_measures_nothing_exits_1(tmp_path):
    """Without rpm no node can be made: every section is skipped with the reason, the run
    says that nothing was measured and exits 1 (a CI must not take it for a result)."""
    tools = busybox_bin(tmp_path)
    out = tmp_path / "r.json"
    env = dict(os.environ, PATH=f"{tools}:{BENCH.parent}")
    r = subprocess.run([str(BENCH), "run", "--quick", "--only", "latency,controls", "-o",
                        str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "nothing could be measured" in r.stderr and "Traceback" not in r.stderr
    doc = schema.load(str(out))
    assert doc["figures"] == {}
    assert {s["what"] for s in doc["skipped"]} >= {"latency", "controls"}
    assert all("rpm" in s["reason"] for s in doc["skipped"] if s["what"] in ("latency",
                                                                              "controls"))
