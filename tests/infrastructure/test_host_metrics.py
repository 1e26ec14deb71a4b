"""The host gauges read at scrape time: a data directory that cannot be read any more (an
unmounted volume) gives NaN, never an exception that would fail the whole scrape."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from infrastructure.metrics import watch_host


def test_the_free_space_of_a_vanished_data_directory_reads_as_nan_and_the_scrape_still_answers(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    watch_host(data_dir)
    assert REGISTRY.get_sample_value("chronicle_data_dir_free_bytes") > 0
    assert REGISTRY.get_sample_value("chronicle_data_dir_filesystem_bytes") > 0
    data_dir.rmdir()
    assert math.isnan(REGISTRY.get_sample_value("chronicle_data_dir_free_bytes"))
    assert b"chronicle_data_dir_free_bytes NaN" in generate_latest(REGISTRY)
