"""redpak-bench on plain data: statistics, the JSON schema, the SVG renderer, the report,
the regression check and its command line (the real run is tests/privileged/)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from redpak.benchsuite import (check, cli, families, machine, report, schema, sections, stats,
                               svg)

SVG_NS = "{http://www.w3.org/2000/svg}"


def result(label="board A", scale=1.0) -> dict:
    """A small valid result, every number multiplied by `scale`."""
    s = scale
    return {
        "schema": schema.SCHEMA, "label": label, "started": "2026-12-06T02:00:00Z",
        "duration_s": 42.0, "quick": True,
        "machine": {"arch": "aarch64", "cpu": "Cortex-A72", "cores": 4, "kernel": "6.6.1",
                    "cgroups": "v2", "lsms": ["lockdown", "landlock"], "python": "3.11.2",
                    "os": "Debian", "redpak_version": "3.0.0"},
        "skipped": [{"what": "crun", "reason": "crun is not installed (not found in PATH)"}],
        "figures": {
            "latency.redwrap 2-level cached.median": schema.figure(2.0 * s, "ms"),
            "throughput.redwrap.launches_per_s": schema.figure(800 / s, "launches/s", "higher"),
        },
        "latency": {"program": "/bin/true", "ratios": {"redwrap/bwrap": 0.4 * s},
                    "commands": {
                        "redwrap 2-level cached": {"kind": "redpak",
                                                   "samples": [1.8 * s, 2.0 * s, 2.4 * s],
                                                   **stats.summary([1.8 * s, 2.0 * s, 2.4 * s])},
                        "bwrap": {"kind": "peer", "samples": [5.0, 5.5, 6.0],
                                  **stats.summary([5.0, 5.5, 6.0])}}},
        "exports": {"counts": [0, 500, 1000],
                    "tools": {"redwrap": {"counts": [0, 500, 1000],
                                          "median_ms": [3.0 * s, 8.0 * s, 13.0 * s]}},
                    "fit": {"redwrap": {"us_per_export": 10.0 * s, "intercept_ms": 3.0,
                                        "r2": 1.0, "up_to": 1000}}},
        "memory": {"launcher_pss_kib": {"redwrap": 230 * s, "bwrap": 600}, "nodes": 20,
                   "launcher_pss_per_node_kib": 100 * s,
                   "sharing": {"nodes": 20, "program": "/bin/sleep", "files": [],
                               "shared_total_kib": 2000 * s, "copies_total_kib": 30000,
                               "ratio": 2000 * s / 30000}},
        "throughput": {"concurrency": 8, "seconds": 1.5,
                       "launches_per_s": {"redwrap": 800 / s, "Node.run": 450 / s}},
    }


# ---- statistics -------------------------------------------------------------------------

def test_percentile_is_nearest_rank():
    data = list(range(1, 101))             # 1..100
    assert stats.percentile(data, 95) == 95
    assert stats.percentile(data, 50) == 50
    assert stats.percentile(data, 100) == 100
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([3, 1, 2], 95) == 3   # unsorted input


def test_median_odd_and_even_counts():
    assert stats.median([5, 1, 3]) == 3
    assert stats.median([4, 1, 3, 2]) == 2.5


def test_statistics_of_nothing_raise():
    with pytest.raises(ValueError):
        stats.median([])
    with pytest.raises(ValueError):
        stats.percentile([], 95)


def test_quartiles_are_the_hinges():
    assert stats.quartiles([1, 2, 3, 4, 5, 6, 7, 8]) == (2.5, 4.5, 6.5)
    assert stats.quartiles([4.0]) == (4.0, 4.0, 4.0)


def test_linear_fit_recovers_slope_and_intercept():
    xs = [0, 10, 100, 1000]
    fit = stats.linear_fit(xs, [3 + 0.0125 * x for x in xs])
    assert fit["slope"] == pytest.approx(0.0125)
    assert fit["intercept"] == pytest.approx(3)
    assert fit["r2"] == pytest.approx(1)
    noisy = stats.linear_fit([0, 1, 2, 3], [0, 2, 1, 3])
    assert 0 < noisy["r2"] < 1


def test_linear_fit_needs_two_distinct_x():
    with pytest.raises(ValueError):
        stats.linear_fit([5, 5], [1, 2])


def test_ratio_of_missing_values_is_none():
    assert stats.ratio(1, 4) == 0.25
    assert stats.ratio(None, 4) is None and stats.ratio(1, 0) is None


# ---- schema -----------------------------------------------------------------------------

def test_a_valid_result_has_no_problems():
    assert schema.validate(result()) == []


@pytest.mark.parametrize("mutate, says", [
    (lambda d: d.update(schema="other/9"), "'schema'"),
    (lambda d: d.pop("machine"), "'machine'"),
    (lambda d: d["machine"].pop("kernel"), "machine.kernel"),
    (lambda d: d.update(skipped=[{"what": "x"}]), "'skipped'"),
    (lambda d: d["figures"].update(bad={"value": "fast", "unit": "ms", "better": "lower"}),
     "figures.bad.value"),
    (lambda d: d["figures"].update(bad={"value": 1, "unit": "ms", "better": "up"}),
     "figures.bad.better"),
    (lambda d: d["figures"].update(bad={"value": float("nan"), "unit": "ms",
                                        "better": "lower"}), "figures.bad.value"),
    (lambda d: d["latency"]["commands"]["bwrap"].update(samples=["x"]),
     "latency.commands.bwrap.samples"),
    (lambda d: d["exports"]["tools"]["redwrap"]["median_ms"].pop(), "exports.tools.redwrap"),
    (lambda d: d.update(memory=[1]), "'memory'"),
])
def test_validate_names_the_bad_key(mutate, says):
    doc = result()
    mutate(doc)
    problems = schema.validate(doc)
    assert any(says in p for p in problems), problems


def test_validate_rejects_a_non_object():
    assert schema.validate([1, 2]) == ["the top level is not a JSON object"]


def test_load_reports_invalid_json_with_its_line(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"schema":\n  oops}\n')
    with pytest.raises(schema.ResultError, match=r"r\.json: not valid JSON \(line 2"):
        schema.load(str(bad))


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(schema.ResultError, match="no such file"):
        schema.load(str(tmp_path / "none.json"))


def test_load_round_trips_a_result(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result()))
    assert schema.load(str(path)) == result()


# ---- machine ------------------------------------------------------------------------------

def test_cpu_model_from_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) E5\n"
    assert machine.cpu_model(x86) == "Intel(R) Xeon(R) E5"
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    assert machine.cpu_model(arm) == "implementer 0x41 part 0xd08"
    rpi = arm + "Hardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B\n"
    assert machine.cpu_model(rpi) == "BCM2835"


# ---- SVG ----------------------------------------------------------------------------------

def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_distribution_marks_carry_their_median_and_p95():
    a = [1.0, 2.0, 3.0, 4.0, 100.0]
    b = [0.5, 0.6, 0.7]
    root = parse(svg.distribution("t", [{"label": "a", "samples": a},
                                        {"label": "b <&>", "samples": b}], "ms", "p"))
    groups = {g.get("data-label"): g for g in root.iter(f"{SVG_NS}g")
              if g.get("class") == "dist"}
    assert set(groups) == {"a", "b <&>"}
    assert float(groups["a"].get("data-median")) == 3.0
    assert float(groups["a"].get("data-p95")) == 100.0
    assert float(groups["b <&>"].get("data-median")) == 0.6
    assert groups["a"].get("data-n") == "5"
    assert root.get("id") == "p"


def test_distribution_positions_follow_the_log_scale():
    root = parse(svg.distribution("t", [{"label": "x", "samples": [1.0, 1.0, 1.0]},
                                        {"label": "y", "samples": [100.0] * 3}], "ms", "p"))
    medians = []
    for g in root.iter(f"{SVG_NS}g"):
        line = [el for el in g if el.tag == f"{SVG_NS}line"][1]      # the median mark
        medians.append(float(line.get("x1")))
    ticks = {t.text: float(t.get("x")) for t in root.iter(f"{SVG_NS}text")
             if t.get("text-anchor") == "middle" and t.text and t.text[0].isdigit()}
    assert medians[0] == pytest.approx(ticks["1"], abs=0.1)
    assert medians[1] == pytest.approx(ticks["100"], abs=0.1)


def test_bars_carry_values_and_reference_line():
    root = parse(svg.bars("r", [("redwrap/bwrap", [("A", 0.4, "#000"), ("B", 0.5, "#111")])],
                          "ratio", "p", reference=1.0))
    bars = [(g.get("data-series"), float(g.get("data-value"))) for g in root.iter(f"{SVG_NS}g")
            if g.get("class") == "bar"]
    assert bars == [("A", 0.4), ("B", 0.5)]
    widths = [float(r.get("width")) for r in root.iter(f"{SVG_NS}rect")]
    assert widths[1] == pytest.approx(widths[0] * 0.5 / 0.4, rel=0.01)
    assert any(line.get("stroke-dasharray") for line in root.iter(f"{SVG_NS}line"))


def test_lines_points_carry_x_and_y():
    root = parse(svg.lines("e", [("redwrap", "#000", [(0, 3.0), (1000, 13.0)]),
                                 ("bwrap", "#111", [(0, 7.0), (250, 120.0)])],
                           "exports", "ms", "p"))
    points = sorted((c.get("data-series"), float(c.get("data-x")), float(c.get("data-y")))
                    for c in root.iter(f"{SVG_NS}circle"))
    assert points == [("bwrap", 0, 7.0), ("bwrap", 250, 120.0), ("redwrap", 0, 3.0),
                      ("redwrap", 1000, 13.0)]


def test_lines_higher_values_are_drawn_higher():
    root = parse(svg.lines("e", [("s", "#000", [(0, 1.0), (1, 2.0)])], "x", "y", "p"))
    cy = [float(c.get("cy")) for c in root.iter(f"{SVG_NS}circle")]
    assert cy[1] < cy[0]


def test_empty_plots_say_no_data():
    for text in (svg.distribution("t", [], "ms", "a"), svg.bars("t", [], "ms", "b"),
                 svg.lines("t", [], "x", "y", "c")):
        assert "no data" in text
        parse(text)


def test_ticks_cover_the_range():
    ticks = svg.nice_ticks(0, 13.2)
    assert ticks[0] <= 0 and ticks[-1] >= 13.2 and len(ticks) <= 9
    assert svg.log_ticks(0.57, 180)[0] <= 0.57 and svg.log_ticks(0.57, 180)[-1] >= 180


# ---- report -------------------------------------------------------------------------------

def test_report_is_self_contained_and_compares_results():
    page = report.render([("a.json", result("board A")), ("b.json", result("board B", 2.0))])
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for plot in ("plot-latency", "plot-ratios", "plot-exports", "plot-memory",
                 "plot-throughput"):
        assert f'id="{plot}"' in page
    # both machines side by side, and the second's change against the first
    assert "board A" in page and "board B" in page and "Cortex-A72" in page
    assert "+100.0%" in page                # the latency median doubled
    assert "crun is not installed" in page  # the skips are named


def test_report_plots_parse_as_svg():
    page = report.render([("a.json", result())])
    import re
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 5
    for text in svgs:
        parse(text)


def test_report_labels_repeated_results_apart():
    page = report.render([("x/a.json", result("same")), ("y/a.json", result("same"))])
    assert "same (2)" in page


# ---- check --------------------------------------------------------------------------------

def test_check_passes_against_itself():
    findings, missing = check.compare(result(), result(), 25)
    assert not missing and not any(f.regressed for f in findings)


def test_check_flags_slower_latency_and_lower_throughput():
    findings, _ = check.compare(result(scale=1.5), result(), 25)
    bad = {f.name for f in findings if f.regressed}
    assert bad == {"latency.redwrap 2-level cached.median", "throughput.redwrap.launches_per_s"}


def test_check_tolerance_and_improvements():
    assert not any(f.regressed for f in check.compare(result(scale=1.2), result(), 25)[0])
    assert any(f.regressed for f in check.compare(result(scale=1.2), result(), 10)[0])
    # faster and more launches per second: never a regression
    assert not any(f.regressed for f in check.compare(result(scale=0.3), result(), 0)[0])


def test_check_names_figures_the_result_lacks():
    doc = result()
    del doc["figures"]["throughput.redwrap.launches_per_s"]
    findings, missing = check.compare(doc, result(), 25)
    assert missing == ["throughput.redwrap.launches_per_s"]
    lines = check.report_lines(findings, missing, 25)
    assert any("not measured: throughput.redwrap.launches_per_s" in line for line in lines)


def test_check_notes_other_modes_and_machines():
    other = result()
    other["quick"] = False
    other["machine"]["cpu"] = "Cortex-A53"
    notes = check.context_notes(result(), other)
    assert any("quick run compared with a full baseline" in n for n in notes)
    assert any("cpu differs: Cortex-A72 (result) vs Cortex-A53 (baseline)" in n for n in notes)
    assert check.context_notes(result(), result()) == []


# ---- goals ----------------------------------------------------------------------------------

def test_goals_are_recorded_beside_the_figures_they_bound():
    figs = schema.with_goals({"ratio.redwrap/unshare": schema.figure(1.22, "ratio"),
                              "exports.redwrap.us_per_export": schema.figure(13.9, "µs/export"),
                              "exports.redwrap.r2": schema.figure(0.99, "r²", "higher"),
                              "latency.redwrap 2-level cold.median": schema.figure(79, "ms")})
    assert figs["ratio.redwrap/unshare"]["goal"] == 1.3
    assert figs["exports.redwrap.us_per_export"]["goal"] == 10
    assert figs["latency.redwrap 2-level cold.median"]["goal"] == 80
    assert "goal" not in figs["exports.redwrap.r2"]
    assert schema.goal_text(figs["ratio.redwrap/unshare"]) == "goal ≤ 1.3 met"
    assert schema.goal_text(figs["exports.redwrap.us_per_export"]) == "goal ≤ 10 MISSED"
    assert schema.goal_text(figs["exports.redwrap.r2"]) == ""
    assert schema.goal_met(dict(schema.figure(3, "x", "higher"), goal=2)) is True
    assert schema.goal_met(dict(schema.figure(1, "x", "higher"), goal=2)) is False
    doc = result()
    doc["figures"] = schema.with_goals(doc["figures"])
    assert schema.validate(doc) == []           # the added field keeps the schema valid
    doc["figures"]["ratio.redwrap/unshare"] = dict(schema.figure(1.2, "ratio"), goal="low")
    assert any("figures.ratio.redwrap/unshare.goal" in p for p in schema.validate(doc))


def test_segments_give_the_marginal_cost_of_an_export():
    segs = sections.segments([1000, 0, 500, 250], [9.0, 1.0, 4.5, 2.0])
    assert [(s["from"], s["to"]) for s in segs] == [(0, 250), (250, 500), (500, 1000)]
    assert [round(s["us_per_export"], 6) for s in segs] == [4.0, 10.0, 9.0]


def goal_result() -> dict:
    doc = result()
    doc["figures"].update({"ratio.redwrap/unshare": schema.figure(1.4, "ratio"),
                           "exports.redwrap.us_per_export": schema.figure(6.0, "µs/export")})
    doc["figures"] = schema.with_goals(doc["figures"])
    doc["exports"]["fit"]["redwrap"].update(
        segments=sections.segments([0, 500, 1000], [3.0, 6.0, 9.5]), marginal_us_per_export=7.0)
    return doc


def test_summary_prints_each_goal_beside_its_figure(capsys):
    cli._summary(goal_result())
    err = capsys.readouterr().err
    lines = {line.split()[0]: line for line in err.splitlines()[1:]}
    assert lines["ratio.redwrap/unshare"].endswith("goal ≤ 1.3 MISSED")
    assert lines["exports.redwrap.us_per_export"].endswith("goal ≤ 10 met")
    assert "goal" not in lines["throughput.redwrap.launches_per_s"]
    assert "exports.redwrap linearity: 0→500 6.0, 500→1000 7.0 µs/export; r² 1.0000" in err
    cli._summary(result())                      # a result made before goals existed
    assert "goal" not in capsys.readouterr().err


def test_report_and_check_show_the_goals(tmp_path):
    page = report.render([("a.json", goal_result())])
    assert "<th>goal</th>" in page and "≤ 1.3" in page
    assert "<td class='n worse'>1.4</td>" in page      # the missed goal is marked
    path = tmp_path / "r.json"
    path.write_text(json.dumps(goal_result()))
    r = bench("check", str(path), "--baseline", str(path))
    assert r.returncode == 0, r.stderr                 # a missed goal is no regression
    assert "goal missed: ratio.redwrap/unshare 1.4 ratio (goal ≤ 1.3 MISSED)" in r.stdout
    assert "exports.redwrap.us_per_export" not in r.stdout.split("figures within")[-1]


# ---- command line -------------------------------------------------------------------------

def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "redpak.benchsuite", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_cli_check_exit_codes_and_messages(tmp_path):
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(result()))
    slow.write_text(json.dumps(result(scale=2.0)))
    ok = bench("check", str(base), "--baseline", str(base))
    assert ok.returncode == 0, ok.stderr
    bad = bench("check", str(slow), "--baseline", str(base), "--tolerance", "10")
    assert bad.returncode == 1
    assert "REGRESSION latency.redwrap 2-level cached.median" in bad.stdout
    assert "REGRESSION throughput.redwrap.launches_per_s" in bad.stdout


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    ("{not json", "not valid JSON (line 1"),
    ('{"schema": "redpak-bench/1"}', "not a valid redpak-bench result"),
])
def test_cli_unusable_inputs_exit_2_without_traceback(tmp_path, content, says):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(result()))
    for args in (["check", str(path), "--baseline", str(good)],
                 ["check", str(good), "--baseline", str(path)],
                 ["report", str(path), "-o", str(tmp_path / "r.html")]):
        r = bench(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert says in r.stderr and "Traceback" not in r.stderr
        assert str(path) in r.stderr


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["check", "x.json"],
                                  ["report", "x.json"], ["run", "--only", "latency,nope"],
                                  ["run", "--concurrency", "0"],
                                  ["check", "a", "--baseline", "b", "--tolerance", "-5"]])
def test_cli_usage_errors_exit_2(args):
    r = bench(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "error" in r.stderr


def test_cli_report_writes_the_page(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result("A")))
    b.write_text(json.dumps(result("B", 1.1)))
    r = bench("report", str(a), str(b), "-o", str(tmp_path / "out.html"))
    assert r.returncode == 0, r.stderr
    assert 'id="plot-latency"' in (tmp_path / "out.html").read_text()


def test_cli_report_into_a_missing_directory_exits_2(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(result()))
    r = bench("report", str(a), "-o", str(tmp_path / "no" / "such" / "r.html"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{tmp_path / 'no' / 'such' / 'r.html'}: No such file or directory" in r.stderr


def test_help_lists_the_three_commands():
    out = bench("--help").stdout
    for word in ("run", "report", "check"):
        assert word in out


# ---- peers from a plan dump ---------------------------------------------------------------

DUMP = """redpak launch plan v1
namespaces: user mnt pid ipc uts cgroup time
identity: uid 0 gid 0 drop-groups
process: hostname 'app' chdir '/home/app' umask 0027 die-with-parent
mount[0] bind '/bin' source '/usr/bin' flags rdonly,optional
mount[1] dev '/dev'
mount[2] data '/etc/group' flags rdonly mode 0444 data b'root:x:0:\\n'
mount[3] symlink '/home/app' source '/nodes/_private'
mount[4] bind '/nodes/app/var' source '/n/app/var'
mount[5] bind '/gone' source '/does/not/exist' flags rdonly,optional
mount[6] tmpfs '/tmp' mode 1777
env: empty (execfd timeout 5000 ms)
env[0] unset HOME
env[1] set PATH '/nodes/app/usr/bin:/bin'
"""


def test_parse_dump_reads_mounts_and_environment():
    plan = families.parse_dump(DUMP)
    assert plan["namespaces"] == {"user", "mnt", "pid", "ipc", "uts", "cgroup", "time"}
    assert plan["hostname"] == "app" and plan["chdir"] == "/home/app"
    assert plan["die_with_parent"] and plan["uid"] == 0
    assert plan["mounts"][2] == {"kind": "data", "target": "/etc/group", "source": None,
                                 "flags": {"rdonly"}, "data": b"root:x:0:\n"}
    assert plan["env"] == [("unset", "HOME", None), ("set", "PATH", "/nodes/app/usr/bin:/bin")]


def test_parse_dump_refuses_other_output():
    with pytest.raises(families.Skip):
        families.parse_dump("usage: redwrap ...\n")


def test_bwrap_argv_does_what_the_plan_does(tmp_path):
    argv = families.bwrap_argv("/usr/bin/bwrap", families.parse_dump(DUMP), str(tmp_path))
    text = " ".join(argv)
    assert "--unshare-user --unshare-pid" in text and "--unshare-net" not in text
    assert "--ro-bind-try /usr/bin /bin" in text
    assert "--bind /n/app/var /nodes/app/var" in text
    assert "/does/not/exist" not in text          # optional and missing: left out
    assert "--symlink /nodes/_private /home/app" in text and "--tmpfs /tmp" in text
    assert "--clearenv --setenv PATH /nodes/app/usr/bin:/bin" in text
    data = argv[argv.index("/etc/group") - 1]
    assert open(data, "rb").read() == b"root:x:0:\n"
    assert argv[-1] == "--die-with-parent"


# ---- harness and progress (real processes, no privilege) ----------------------------------

from redpak.benchsuite import harness, runner  # noqa: E402


def test_time_commands_interleaves_and_counts_runs():
    true = harness.host_program("true")
    got = harness.time_commands({"a": harness.Command([true]), "b": harness.Command(["true"])},
                                runs=7, warmup=1)
    assert {k: len(v) for k, v in got.items()} == {"a": 7, "b": 7}
    assert all(ms > 0 for v in got.values() for ms in v)


def test_time_commands_budget_stops_after_three_samples():
    slow = harness.Command([harness.host_program("sleep"), "0.05"])
    got = harness.time_commands({"slow": slow}, runs=100, warmup=0, budget_s=0.01)
    assert len(got["slow"]) == 3 and min(got["slow"]) >= 50


def test_a_failing_command_is_a_skip_with_its_error():
    false = harness.Command([harness.host_program("false")])
    with pytest.raises(harness.Skip, match="status 1"):
        false.check()
    with pytest.raises(harness.Skip, match="failed during the measurement"):
        harness.time_commands({"false": false}, runs=3, warmup=0)


def test_process_probes_on_this_process():
    import os
    me = os.getpid()
    assert me in harness.tree(me)
    assert harness.pss_kib(me) > 0
    assert harness.pss_kib(2 ** 22 + 12345) == 0          # no such process
    assert any(os.path.basename(f).startswith("libc") or "python" in f
               for f in harness.mapped_files(me))


def test_progress_writes_a_line_per_section_to_a_log():
    import io
    out = io.StringIO()
    p = runner.Progress(stream=out)
    p("latency", "1/30")
    p("latency", "2/30")
    p.note("skipped crun: not installed")
    p("exports", "starting")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "] latency: 1/30" in lines[0] and lines[1] == "redpak-bench: skipped crun: not installed"
    assert "] exports: starting" in lines[2]
    quiet = io.StringIO()
    runner.Progress(stream=quiet, quiet=True)("latency", "x")
    assert quiet.getvalue() == ""
