"""What the `document_search` projector pays to delete a document's passages as the index grows
(ADR-051): N documents of P passages (about 1,000 characters each) recorded through the command
bus and projected, then K of them deleted one at a time, each deletion applied by the projection
runner on its own. Per deletion: the runner's wall time (reading the event included). A newer
completed conversion replaces a document's passages with the same statement.

Run it on two commits back to back to compare (the script only needs `tests/projections`):

    python -m benchmarks.document_passages --documents 2000 --passages 50 --json benchmarks/results/document-passages.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from application.documents import DeleteDocument
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from projections.document_search import DocumentSearchProjector
from tests.projections.projection_log import ChatLog, Projected


def run(documents: int, passages: int, deletions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        side = bootstrap(Settings.from_env(Path(tmp) / "data"))
        try:
            log = ChatLog(side)
            owner = log.user("bench@example.org")
            paragraph = " ".join(f"word{n % 997}" for n in range(120))  # about 1,000 characters: one passage each
            ids = []
            for n in range(documents):
                document = log.upload(owner, f"document {n}".encode())
                log.complete_conversion(log.request_conversion(document, owner), "\n\n".join([f"{paragraph} {n}"] * passages))
                ids.append(document)
            projected = Projected(side, DocumentSearchProjector(side.blobs.read_text), Path(tmp) / "read.sqlite3").catch_up()
            indexed = projected.rows("SELECT count(*) AS n FROM document_passages")[0]["n"]
            seconds = []
            for document in ids[:deletions]:
                log.run(DeleteDocument(document, owner), owner)
                started = time.perf_counter()
                projected.catch_up()
                seconds.append(time.perf_counter() - started)
            left = projected.rows("SELECT count(*) AS n FROM document_passages")[0]["n"]
            projected.close()
        finally:
            side.close()
    return {
        "documents": documents,
        "passages_indexed": indexed,
        "passages_left": left,
        "deletions": deletions,
        "deletion_ms_median": round(statistics.median(seconds) * 1000, 3),
        "deletion_ms_max": round(max(seconds) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--passages", type=int, default=50)
    parser.add_argument("--deletions", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    result = run(args.documents, args.passages, args.deletions)
    print(result)
    save_json(args.json, result)


if __name__ == "__main__":
    main()
