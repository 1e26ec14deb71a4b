"""The web client benchmark in a short form, so it keeps working: what must hold on any machine
(every live message painted exactly once, nothing lost, the whole conversation reachable by
scrolling, the first screen's JS under its budget). Timings are not asserted here."""

import pytest

from benchmarks.web_client import AIMS, run

pytestmark = [pytest.mark.load, pytest.mark.browser]


@pytest.mark.timeout(300)
def test_the_web_client_benchmark_paints_every_live_message_once_and_ships_a_small_first_screen():
    result = run(messages=500, posters=5, seconds=5, navigations=2)
    live, heap, first_screen = result["live"], result["heap"], result["first_screen"]
    assert live["post_errors"] == 0 and live["posted"] > 0
    assert live["painted"] == live["posted"] and live["never_painted"] == 0
    assert live["shown_twice"] == 0 and live["unexpected_tags"] == []
    assert heap["scroll_complete"] and heap["distinct_messages_shown"] == heap["messages_in_session"] == 500 + live["posted"]
    for screen in ("sign_in_page", "session_list_after_sign_in", "session_list_direct"):
        assert 0 < first_screen[f"{screen}_js_gzip_kb"] <= AIMS["first_screen_js_kb"], first_screen
    assert result["browser_problems"] == []
