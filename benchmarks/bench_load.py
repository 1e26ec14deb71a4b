"""The load tools in a short form, so they keep working (figures are not asserted here)."""

import os

import pytest

from benchmarks.load import ceiling, chronicle

pytestmark = pytest.mark.load
FULL = os.environ.get("CHRONICLE_LOAD_FULL") == "1"


def test_the_load_tool_posts_through_a_real_server_without_errors():
    run = chronicle("aiohttp", clients=50 if FULL else 10, sessions=50 if FULL else 5, seconds=10 if FULL else 2, max_requests=2_000_000)
    assert run.errors == 0 and run.requests > 0
    assert run.read_model_catch_up_ms is not None and run.server_rss_mb > 0


def test_the_ceiling_reference_serves_the_same_load():
    run = ceiling("aiohttp", clients=10, sessions=5, seconds=1, max_requests=2_000_000)
    assert run.errors == 0 and run.requests > 0


def test_the_long_session_measurement_runs():
    from benchmarks.long_session import measure

    result = measure(messages=3_000, repeats=3)
    assert result["early_us_per_post"] > 0 and result["late_us_per_post"] > 0


def test_the_websocket_fanout_benchmark_loses_and_repeats_nothing():
    from benchmarks.ws_fanout import run

    for nodes in (0, 2):  # one SQLite server; two PostgreSQL nodes, half the frames crossing between them
        result = run(subscribers=20, sessions=4, rate=40, seconds=2, nodes=nodes)
        assert result.posted > 0 and result.frames_expected == result.frames_delivered, nodes
        assert result.frames_lost == 0 and result.frames_duplicated == 0, nodes
        assert result.client_cpu_us_per_frame > 0, "the client's own CPU per frame is measured beside the server's"


def test_the_documents_benchmark_uploads_converts_and_posts():
    from benchmarks.documents import run

    result = run(short=not FULL)
    assert result["upload_1mb_mb_per_s"] > 0 and result["upload_50mb_mb_per_s"] > 0
    assert set(result["conversions_per_second"]) == {"pdf", "docx", "pptx", "xlsx", "html", "markdown", "text", "csv", "json"}
    assert result["posting_during_4_conversions"]["posts_per_second"] > 0


def test_the_audit_benchmark_replays_verifies_and_exports():
    from benchmarks.audit import run

    result = run(session_messages=10_000 if FULL else 500, other_events=90_000 if FULL else 500)
    assert result["exported"] == result["session_messages"] + 1
    assert result["replay_ms_median"] > 0 and result["verify_events_per_s"] > 0
    assert result["floor_ms"] > result["raw_session_rows_ms_median"] > 0, "the floor adds parsing and opening to the raw read"
    assert result["decode_ms_median"] > 0 and result["fold_ms_median"] > 0


def test_the_rebuild_benchmark_rebuilds_every_read_model_to_the_head():
    from benchmarks.rebuild import run

    result = run(events=1_000_000 if FULL else 2_000)
    assert result["events"] >= (1_000_000 if FULL else 2_000) and result["projectors"] >= 9
    assert result["replay_events_per_s"] > 0
    assert 0 < result["sqlite_swap_seconds"] and 0 < result["sqlite_build_seconds"], "the swap's and the shadow's statements were timed"
    assert result["floor_seconds"] > 0 and result["floor_of_ceiling"] > 0
    slowest = result["sqlite_slowest_statements_seconds"]
    assert any(sql.startswith("build: INSERT INTO messages") for sql in slowest), slowest
    rounding = 0.0005 * (len(slowest) + 2)  # every figure is rounded to 1 ms
    assert sum(slowest.values()) <= result["sqlite_build_seconds"] + result["sqlite_swap_seconds"] + rounding


def test_the_storage_ceiling_appends_durably():
    from benchmarks.load import sqlite_appends

    run = sqlite_appends(0.5)
    assert run.requests > 0 and run.target == "raw SQLite append (FULL)"


def test_the_conditional_get_benchmark_answers_304_and_200_without_errors():
    from benchmarks.http_cache import run

    result = run(messages=50, clients=10 if FULL else 4, seconds=5 if FULL else 1, rounds=3 if FULL else 1)
    assert result["errors"] == 0 and result["page_bytes"] > 0
    assert all(rate > 0 for rate in result["median_requests_per_s"].values())


def test_the_change_positions_cost_benchmark_rebuilds_with_and_without_the_projector():
    from benchmarks.change_positions_cost import run

    result = run(events=1_000, rounds=1)
    assert result["events"] >= 1_000 and all(rate > 0 for rate in result["events_per_s"].values())


def test_the_read_side_benchmark_queries_both_engines_and_catches_a_replica_up():
    from benchmarks.read_side import STEPS, queries, startup

    measured = queries(messages=3_000, sessions=60, users=20, samples=20, concurrency=2, seconds=0.2)
    assert {row["engine"] for row in measured["queries"]} == {"SQLite replica (aiosqlite)", "PostgreSQL (psycopg async)"}
    by_query: dict[str, list[float]] = {}
    for row in measured["queries"]:
        by_query.setdefault(row["query"], []).append(row["rows_per_request"])
    assert all(len(set(rows)) == 1 for rows in by_query.values()), by_query  # both engines find as many rows
    report = startup(events=3_000, steps=STEPS)
    assert report["events"] >= 3_000 and report["rows_copied"] > 0


def test_the_document_passages_benchmark_deletes_exactly_the_deleted_documents_passages():
    from benchmarks.document_passages import run

    result = run(documents=30, passages=4, deletions=3)
    assert result["passages_indexed"] == 30 * 4 and result["passages_left"] == 27 * 4
    assert result["deletion_ms_median"] > 0


def test_the_sealing_benchmark_opens_both_forms_and_one_layer_grows_slower():
    from benchmarks.sealing import run

    rows = run(chars=200, quoted=[1, 8], rounds=3)
    assert [row["quoted"] for row in rows] == [1, 8]
    assert rows[1]["one_layer_chars"] - rows[0]["one_layer_chars"] < rows[1]["layered_chars"] - rows[0]["layered_chars"]


def test_the_idle_streams_benchmark_holds_its_sockets_and_loses_nothing():
    from benchmarks.idle_streams import run

    result = run(sockets=40, sessions=4, idle_seconds=1, rate=10, post_seconds=1)
    assert result.opened == 40 and result.closed_by_server == 0
    assert result.posted > 0 and result.frames_expected == result.frames_delivered == result.posted * 10
    assert result.frames_lost == 0 and result.frames_duplicated == 0 and result.rss_open_mb > 0


def test_the_nodes_benchmark_delivers_across_two_nodes_without_loss():
    from benchmarks.nodes import run

    result = run(posts=200 if FULL else 20, rate=50 if FULL else 20)
    assert result.posts > 0 and result.post_errors == 0
    assert result.frames_lost == 0 and result.frames_duplicated == 0
    assert result.delivery_other_p99_ms > 0 and result.read_other_p99_ms > 0


def test_the_request_cycle_benchmark_posts_through_both_apps_in_process():
    from benchmarks.request_cycle import run

    result = run(requests=1_000, concurrency=10, sessions=3)
    assert result["trivial"]["statuses"] == {"201": 1_000} and result["posting"]["statuses"] == {"201": 1_000}
    assert result["posting"]["loop_us_per_request"] > result["trivial"]["loop_us_per_request"] > 0
    assert result["posting"]["bus_us_per_post"] > 0, "the command bus's thread was found and measured"
    assert result["posting"]["posts_per_group_commit"] >= 1
