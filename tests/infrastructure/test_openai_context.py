"""What the `openai` provider records of the context it sends (`OpenAIAssistant._messages`):
whose words the model saw, so that its reply is sealed with their keys too. No network: the
history is given, nothing is sent."""

from uuid import uuid4

import anyio

from application.assistant import ReplyRequest, ReplyUsage, Turn
from infrastructure.assistants.openai_assistant import OpenAIAssistant


def test_an_earlier_reply_in_the_context_brings_its_askers_key_and_its_sources():
    session, ann, bob = uuid4(), str(uuid4()), str(uuid4())
    cited = {"kind": "document", "document_id": str(uuid4()), "owner_id": ann}
    turns = [
        Turn("user", "what is in the runbook?", bob, "2026-12-01"),
        Turn("assistant", "the runbook says: rotate the keys", bob, "2026-12-01", (cited,)),
        Turn("user", "thanks", bob, "2026-12-01"),
    ]

    async def history(request):
        return turns

    async def context():
        provider = OpenAIAssistant("http://127.0.0.1:9/v1", "m", None, history)
        usage = ReplyUsage()
        try:
            sent = await provider._messages(ReplyRequest(session, uuid4(), uuid4(), "and then?", 9), usage)
        finally:
            await provider.close()
        return sent, usage.sources

    sent, sources = anyio.run(context)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "user"]
    assert {"kind": "context", "session_id": str(session), "author_id": bob, "content_day": "2026-12-01"} in sources
    assert cited in sources, "the reply may repeat what the earlier reply quoted"
    assert len(sources) == 2, sources
