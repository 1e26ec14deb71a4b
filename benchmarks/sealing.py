"""What sealing a reply with the keys of everyone it quotes costs (ADR-053): one reply of C
characters quoting N people's content keys, stored as a layer per key (how the mapper sealed it
until 2026-12-06; still read) and as one layer for all the keys, the stored size of each and the
median time to open it (keys at hand, as a replay's per-batch cache holds them).

    python -m benchmarks.sealing --chars 1000 --quoted 1 4 8 16 32 --json benchmarks/results/sealing.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.report import save_json
from infrastructure.storage.sealing import _seal, _seal_with_all, open_sealed, open_sealed_with_all


def _median_us(open_once: Callable[[], str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        open_once()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e6, 1)


def run(chars: int, quoted: list[int], rounds: int = 200) -> list[dict[str, Any]]:
    content = ("the figures they gave, " * (chars // 23 + 1))[:chars]
    rows = []
    for count in quoted:
        keys = [(f"{uuid4().hex}.{uuid4().hex}.2026-12-06", AESGCM(AESGCM.generate_key(256))) for _ in range(count + 1)]  # and the asker's
        cipher_of = dict(keys).get
        layered = content
        for subject, cipher in keys:
            layered = _seal(cipher, subject, layered)
        one_layer = _seal_with_all(keys, content)

        def open_layered(value: str = layered, layers: int = count + 1, keys: Any = cipher_of) -> str:
            for _ in range(layers):
                value = open_sealed(value, keys)
            return value

        def open_one_layer(value: str = one_layer, keys: Any = cipher_of) -> str:
            return open_sealed_with_all(value, keys)

        assert open_layered() == content and open_one_layer() == content
        rows.append(
            {
                "quoted": count,
                "layered_chars": len(layered),
                "one_layer_chars": len(one_layer),
                "layered_open_us": _median_us(open_layered, rounds),
                "one_layer_open_us": _median_us(open_one_layer, rounds),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--quoted", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    rows = run(args.chars, args.quoted, args.rounds)
    for row in rows:
        print(row)
    save_json(args.json, rows)


if __name__ == "__main__":
    main()
