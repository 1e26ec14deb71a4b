"""What the `openai` provider records of the context it sends (`OpenAIAssistant._messages`):
whose words the model saw (an earlier reply's include what it drew on), so that its reply is sealed with their keys too. No network: the
history is given, nothing is sent."""

from uuid import uuid4

import anyio

from application.assistant import ReplyRequest, ReplyUsage, Turn
from domain.user import ERASED
from infrastructure.assistants.openai_assistant import MAX_CONTEXT_KEYS, OpenAIAssistant


def context(turns: list[Turn]) -> tuple[list[dict], list[dict], str]:
    session = uuid4()

    async def history(request):
        return turns

    async def run():
        provider = OpenAIAssistant("http://127.0.0.1:9/v1", "m", None, history)
        usage = ReplyUsage()
        try:
            sent = await provider._messages(ReplyRequest(session, uuid4(), uuid4(), "and then?", 9), usage)
        finally:
            await provider.close()
        return sent, usage.sources, str(session)

    return anyio.run(run)


def test_an_earlier_reply_in_the_context_brings_its_askers_key_and_an_erased_turn_is_left_out():
    ann, bob = str(uuid4()), str(uuid4())
    sent, sources, session = context(
        [
            Turn("user", ERASED, ann, "2026-11-30"),
            Turn("user", "what is in the runbook?", bob, "2026-12-01"),
            Turn("assistant", "the runbook says: rotate the keys", bob, "2026-12-01"),
            Turn("assistant", "an answer to a question asked the next day", bob, "2026-12-02"),
        ]
    )
    assert [m["content"] for m in sent[1:-1]] == [
        "what is in the runbook?",
        "the runbook says: rotate the keys",
        "an answer to a question asked the next day",
    ]
    assert sources == [
        {"kind": "context", "session_id": session, "author_id": bob, "content_day": "2026-12-02"},
        {"kind": "context", "session_id": session, "author_id": bob, "content_day": "2026-12-01"},
    ]


def test_an_earlier_reply_brings_the_keys_of_what_it_drew_on():
    """A model may repeat what an earlier reply quoted: its reply is sealed with the quoted
    people's keys too, so erasing them erases the repetition."""
    ann, bob, dan, elsewhere = str(uuid4()), str(uuid4()), str(uuid4()), str(uuid4())
    drew_on = (
        {"kind": "message", "session_id": elsewhere, "message_id": str(uuid4()), "author_id": ann, "content_day": "2026-11-28"},
        {"kind": "document", "document_id": str(uuid4()), "passage": 2, "owner_id": dan},
        {"kind": "context", "session_id": elsewhere, "author_id": ann, "content_day": "2026-11-28"},  # the same key again
        {"kind": "message", "message_id": str(uuid4())},  # recorded before sources named their authors: no key
    )
    _, sources, session = context([Turn("assistant", "Ann wrote that the vault code is 1234", bob, "2026-12-01", drew_on)])
    assert sources == [
        {"kind": "context", "session_id": session, "author_id": bob, "content_day": "2026-12-01"},
        {"kind": "context", "session_id": elsewhere, "author_id": ann, "content_day": "2026-11-28"},
        {"kind": "context", "owner_id": dan},
    ]


def test_the_context_stops_before_a_turn_whose_key_would_be_one_too_many():
    """Each key adds to the sealed reply and to what opening it costs."""
    people = [str(uuid4()) for _ in range(MAX_CONTEXT_KEYS + 2)]
    sent, sources, _ = context([Turn("user", f"note {n}", person, "2026-12-01") for n, person in enumerate(people)])
    assert len(sources) == MAX_CONTEXT_KEYS
    assert [m["content"] for m in sent[1:-1]] == [f"note {n}" for n in range(2, MAX_CONTEXT_KEYS + 2)]


def test_an_earlier_reply_that_drew_on_too_many_is_left_out_and_the_rest_of_the_history_kept():
    """One reply bringing more keys than the cap must not cost the whole history."""
    ann, bob = str(uuid4()), str(uuid4())
    drew_on = tuple(
        {"kind": "context", "session_id": str(uuid4()), "author_id": str(uuid4()), "content_day": "2026-11-20"}
        for _ in range(MAX_CONTEXT_KEYS)
    )
    sent, sources, session = context(
        [
            Turn("user", "what is the plan?", ann, "2026-12-01"),
            Turn("assistant", "a summary of everything", bob, "2026-12-01", drew_on),
            Turn("user", "and the budget?", bob, "2026-12-02"),
        ]
    )
    assert [m["content"] for m in sent[1:-1]] == ["what is the plan?", "and the budget?"]
    assert [s["author_id"] for s in sources] == [bob, ann]
