"""Every projector Chronicle runs, by name."""

from __future__ import annotations

from projections.members import SessionMembersProjector
from projections.messages import SessionMessagesProjector
from projections.projector import Projector
from projections.sessions import SessionsProjector
from projections.users import UsersProjector


def all_projectors() -> list[Projector]:
    return [UsersProjector(), SessionMembersProjector(), SessionsProjector(), SessionMessagesProjector()]
