"""What the steps of sending one frame to one subscriber cost, alone, in one process: websockets'
framing of a text message (UTF-8 decode and encode included), a loopback TCP `send()` to a reader
process (one frame per call, and ten per call), and waking a task through an `asyncio.Queue` on
uvloop (what the channels plugin does for each subscriber).

    python -m benchmarks.ws_send_costs
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import timeit

import msgspec
import uvloop
from websockets.protocol import State
from websockets.server import ServerProtocol

FRAME = msgspec.json.encode(
    {
        "position": 123456,
        "type": "message.posted",
        "session_id": "0193c1d2-8a7b-7c3e-9f00-123456789abc",
        "data": {
            "message_id": "0193c1d2-8a7b-7c3e-9f00-123456789abc",
            "author_id": "0193c1d2-8a7b-7c3e-9f00-123456789abc",
            "content": "a message for every subscriber",
            "posted_at": "2026-12-02T08:00:00.000000+00:00",
        },
    }
)
COUNT = 100_000


def framing_us() -> float:
    connection = ServerProtocol()
    connection.state = State.OPEN

    def frame() -> None:
        connection.send_text(FRAME.decode().encode())
        b"".join(connection.data_to_send())

    return timeit.timeit(frame, number=COUNT) / COUNT * 1e6


def loopback_send_us(frames_per_call: int) -> float:
    """A reader process drains the other end, so the sends never block."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reader = os.fork()
    if reader == 0:
        connection = socket.create_connection(listener.getsockname())
        while connection.recv(1 << 16):
            pass
        os._exit(0)
    sender, _ = listener.accept()
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = (b"\x81\x7e" + len(FRAME).to_bytes(2, "big") + FRAME) * frames_per_call
    calls = COUNT // frames_per_call
    try:
        return timeit.timeit(lambda: sender.send(wire), number=calls) / calls / frames_per_call * 1e6
    finally:
        sender.close()
        listener.close()
        os.waitpid(reader, 0)


async def _wake_ups_us() -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    done = asyncio.Event()

    async def subscriber() -> None:
        for _ in range(COUNT):
            await queue.get()
        done.set()

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0)
    started = time.perf_counter()
    for _ in range(COUNT):
        queue.put_nowait(FRAME)
        await asyncio.sleep(0)
    await done.wait()
    await task
    return (time.perf_counter() - started) / COUNT * 1e6


def main() -> None:
    print(f"frame of {len(FRAME)} bytes, µs each:")
    print(f"  websockets framing (decode, encode, header): {framing_us():.2f}")
    print(f"  loopback send(), one frame per call: {loopback_send_us(1):.2f}")
    print(f"  loopback send(), ten frames per call, per frame: {loopback_send_us(10):.2f}")
    print(f"  queue put + task wake-up (+ the poster's sleep(0)): {uvloop.run(_wake_ups_us()):.2f}")


if __name__ == "__main__":
    main()
