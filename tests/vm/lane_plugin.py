"""pytest plugin of the VM lanes (tools/vm/lane loads it with -p lane_plugin): a lane runs
every test it selects, so a skipped test fails the run instead of passing silently."""

from __future__ import annotations

_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"lane: {len(_skipped)} test(s) skipped, which fails the lane: {_skipped}", red=True)
