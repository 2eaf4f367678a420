"""On-call QA of the operational commands: each test is a bug found by trying to break them."""

from __future__ import annotations

import pytest

from tests.test_bad_input import assert_one_error


@pytest.mark.parametrize("flag", ["--window", "--for"])
def test_freeze_absurd_duration_is_a_usage_error(sandbox, cli, flag):
    # 999999999999d overflowed datetime: a traceback (--window) or a blank OSError, exit 1 (--for)
    r = cli("freeze", "--to", "1", flag, "999999999999d", "--dry-run", "--json")
    assert_one_error(r, 2, flag, "too long")
    assert r.stdout == ""
