"""The load tool in a short form, so it keeps working (figures are not asserted here)."""

import os

import pytest

from benchmarks.load import run

pytestmark = pytest.mark.load


def test_the_load_tool_posts_through_a_real_server_without_errors():
    full = os.environ.get("CHRONICLE_LOAD_FULL") == "1"
    result = run(clients=50 if full else 10, sessions=50 if full else 5, seconds=10 if full else 2,
                 max_messages=1_000_000, pin=False)
    assert result.errors == 0
    assert result.messages > 0 and result.messages_per_second > 0
    assert result.server_rss_mb > 0


def test_the_long_session_measurement_runs():
    from benchmarks.long_session import measure

    result = measure(messages=3_000, repeats=3)
    assert result["early_us_per_post"] > 0 and result["late_us_per_post"] > 0
