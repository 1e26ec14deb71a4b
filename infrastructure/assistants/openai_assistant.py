"""The `openai` assistant provider: any server speaking the OpenAI chat-completions API with
`stream: true` (OpenAI, Ollama, vLLM, llama.cpp's server), over httpx.

Server-sent events are read line by line; a stream must end with `data: [DONE]`, so a stream
that breaks midway is an error, never a hung reply (reads also time out). Failures before the
first token are retried a bounded number of times (connection errors, 429 and 5xx answers);
after the first token a failure ends the reply, since its text has already been streamed.

The model server is not trusted with memory: a line is split at line feeds only and may not
pass MAX_LINE_BYTES, an error answer is read up to MAX_ERROR_BYTES, and a delta must be text
(the chat engine bounds the reply's length). Nothing the server sent goes into an error's
message: that message is recorded unsealed in the reply's failure and shown to every member,
and the server may have echoed what it was given; it goes to the log instead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import structlog

from application.assistant import ReplyRequest, ReplyUsage, Turn
from domain.user import ERASED

log = structlog.stdlib.get_logger(__name__)

SYSTEM_PROMPT = (
    "You are the assistant in a team chat. Answer the last message briefly and concretely, "
    "using the conversation so far. Say so when the conversation does not contain the answer."
)
HistoryLoader = Callable[[ReplyRequest], Awaitable[list[Turn]]]
MAX_CONTEXT_KEYS = 32
MAX_LINE_BYTES = 1 << 20
MAX_ERROR_BYTES = 4096


class ProviderError(Exception):
    pass


def _context_sources(turn: Turn, session_id: str) -> list[dict[str, str]]:
    """The `context` sources a turn brings: its own words' key (author and day), and for an
    earlier reply the keys of what it drew on (a quoted message's, a cited document owner's)."""
    sources = []
    if turn.author_id and turn.content_day:
        sources.append({"kind": "context", "session_id": session_id, "author_id": turn.author_id, "content_day": turn.content_day})
    for source in turn.drew_on:
        kind, session, author, day, owner = (source.get(name) for name in ("kind", "session_id", "author_id", "content_day", "owner_id"))
        if kind in ("message", "context") and session and author and day:
            sources.append({"kind": "context", "session_id": session, "author_id": author, "content_day": day})
        elif kind in ("document", "context") and owner:
            sources.append({"kind": "context", "owner_id": owner})
    return sources


class OpenAIAssistant:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        history: HistoryLoader,
        *,
        read_timeout: float = 30.0,
        retries: int = 2,
        context_chars: int = 12_000,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        # identity: the body is read raw, so no compressed chunk inflates past the limits below
        self._headers = {"accept-encoding": "identity"} | ({"authorization": f"Bearer {api_key}"} if api_key else {})
        self._history = history
        self._retries = retries
        self._context_chars = context_chars
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=5.0))

    async def close(self) -> None:
        await self._client.aclose()

    async def _messages(self, request: ReplyRequest, usage: ReplyUsage) -> list[dict[str, str]]:
        """The question plus as much recent history as fits the context budget, oldest first.
        Whose words the model saw are recorded as `context` sources (once per author and day; an
        earlier reply's are its asker's, and those of everyone it drew on): the reply may repeat
        them, so it is sealed with their keys too. Each key adds its subject and 60 bytes to the
        sealed reply and one key to open when it is read, so a turn that would need more keys
        than are left of MAX_CONTEXT_KEYS is left out (and the older ones may still fit). A reply
        whose own keys reached the cap is such a turn for every later context (it brings its
        asker's key on top): repeating what it drew on would need a key too many. Erased
        turns are left out too: they say nothing, and their key is gone."""
        budget = self._context_chars - len(request.question)
        kept: list[dict[str, str]] = []
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for turn in reversed(await self._history(request)):
            if turn.content == ERASED:
                continue
            new = {
                key: source
                for source in _context_sources(turn, str(request.session_id))
                if (key := tuple(sorted(source.items()))) not in seen
            }
            if len(turn.content) > budget:
                break
            if len(seen) + len(new) > MAX_CONTEXT_KEYS:
                continue  # left out: an earlier reply that drew on many may need more keys than are left
            budget -= len(turn.content)
            kept.append({"role": turn.role, "content": turn.content})
            seen.update(new)
        usage.sources.extend(seen.values())
        return [{"role": "system", "content": SYSTEM_PROMPT}, *reversed(kept), {"role": "user", "content": request.question}]

    async def reply(self, request: ReplyRequest, usage: ReplyUsage) -> AsyncIterator[str]:
        body = {
            "model": self._model,
            "messages": await self._messages(request, usage),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        usage.model = self._model
        for attempt in range(self._retries + 1):
            yielded = False
            try:
                async for piece in self._stream(body, usage):
                    yielded = True
                    yield piece
                return
            except (ProviderError, httpx.TransportError) as error:
                retriable = not yielded and (isinstance(error, httpx.TransportError) or "retriable" in str(error))
                if not retriable or attempt == self._retries:
                    if isinstance(error, ProviderError):
                        raise
                    # httpx's message may quote what the server sent (h11 quotes a bad header line)
                    log.warning("the model server could not be read", error=str(error)[:300])
                    raise ProviderError(f"{type(error).__name__} talking to the model server") from error
                await asyncio.sleep(0.2 * 2**attempt)

    async def _stream(self, body: dict, usage: ReplyUsage) -> AsyncIterator[str]:
        async with self._client.stream("POST", self._url, json=body, headers=self._headers) as response:
            if response.status_code != 200:
                head = await _head(response, MAX_ERROR_BYTES)
                log.warning("the model server refused", status=response.status_code, body=head.decode(errors="replace")[:300])
                kind = "retriable " if response.status_code == 429 or response.status_code >= 500 else ""
                raise ProviderError(f"{kind}HTTP {response.status_code} from the model server")
            async for line in _lines(response, MAX_LINE_BYTES):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as error:
                    log.warning("the model server sent invalid JSON", data=data[:100])
                    raise ProviderError("the model server sent invalid JSON") from error
                if not isinstance(chunk, dict):
                    raise ProviderError("the model server sent a chunk that is not an object")
                if "error" in chunk:
                    log.warning("the model server reported an error", error=str(chunk["error"])[:300])
                    raise ProviderError("the model server reported an error")
                if isinstance(chunk.get("usage"), dict):
                    usage.prompt_tokens = _count(chunk["usage"].get("prompt_tokens"))
                    usage.completion_tokens = _count(chunk["usage"].get("completion_tokens"))
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                    if content is not None and not isinstance(content, str):
                        raise ProviderError("the model server sent a delta that is not text")
                    if content:
                        yield content
        raise ProviderError("the stream ended before [DONE]")


async def _lines(response: httpx.Response, limit: int) -> AsyncIterator[str]:
    """The body's lines, split at line feeds only: JSON may hold U+2028 and its like unescaped,
    where `str.splitlines` (httpx's `aiter_lines`) would split. A line longer than `limit` bytes
    is an error, not a buffer that grows."""
    pending = bytearray()
    async for chunk in response.aiter_raw():
        start, scanned = 0, len(pending)  # what was pending holds no line feed: only the new bytes are searched
        pending += chunk
        while (end := pending.find(b"\n", max(start, scanned))) >= 0:
            yield pending[start:end].rstrip(b"\r").decode(errors="replace")
            start = end + 1
        del pending[:start]
        if len(pending) > limit:
            raise ProviderError(f"the model server sent a line longer than {limit} bytes")
    if pending:
        yield pending.decode(errors="replace")


async def _head(response: httpx.Response, limit: int) -> bytes:
    """At most about `limit` bytes of the body: an error answer may be endless."""
    head = bytearray()
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= limit:
            break
    return bytes(head[:limit])


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31 else 0
