"""Every projector Chronicle runs, by name."""

from __future__ import annotations

from projections.change_positions import ChangePositionsProjector
from projections.document_search import DocumentSearchProjector, ReadText
from projections.documents import DocumentsProjector
from projections.members import SessionMembersProjector
from projections.messages import SessionMessagesProjector
from projections.projector import Projector
from projections.search import SearchIndexProjector
from projections.session_feed import SessionFeedProjector
from projections.sessions import SessionsProjector
from projections.user_feed import UserFeedProjector
from projections.users import UsersProjector


def all_projectors(read_text: ReadText) -> list[Projector]:
    """`read_text` gives the text of a stored blob (None when it is gone), for the document index."""
    return [
        UsersProjector(),
        SessionMembersProjector(),
        SessionsProjector(),
        SessionMessagesProjector(),
        SessionFeedProjector(),
        UserFeedProjector(),
        SearchIndexProjector(),
        DocumentsProjector(),
        DocumentSearchProjector(read_text),
        ChangePositionsProjector(),
    ]
