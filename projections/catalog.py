"""Every projector Chronicle runs, by name."""

from __future__ import annotations

from projections.members import SessionMembersProjector
from projections.messages import SessionMessagesProjector
from projections.projector import Projector
from projections.search import SearchIndexProjector
from projections.session_feed import SessionFeedProjector
from projections.sessions import SessionsProjector
from projections.user_feed import UserFeedProjector
from projections.users import UsersProjector


def all_projectors() -> list[Projector]:
    return [
        UsersProjector(), SessionMembersProjector(), SessionsProjector(), SessionMessagesProjector(),
        SessionFeedProjector(), UserFeedProjector(), SearchIndexProjector(),
    ]
