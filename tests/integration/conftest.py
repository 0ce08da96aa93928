"""Integration-test plumbing: each test's call outcome is kept on its item, so that a fixture
can print diagnostics (node logs) in teardown when the test failed."""

from __future__ import annotations

from collections.abc import Generator

import pytest

CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report
