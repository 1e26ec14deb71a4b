"""Finding a person to invite: by their exact email address, one at a time."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from application.accounts import user_by_email
from application.chronicle import Chronicle
from infrastructure.web.auth import Principal
from infrastructure.web.rate_limits import lookups


class PersonView(msgspec.Struct):
    id: str
    display_name: str


class UsersController(Controller):
    path = "/api/users"
    tags = ["users"]

    @get("/lookup", guards=[lookups], problems=(404,))
    async def lookup(
        self,
        event_store: Chronicle,
        request: Request[Principal, Any, Any],
        email: Annotated[str, Parameter(min_length=3, max_length=254)],
    ) -> PersonView:
        """The person registered under exactly this address (case does not matter), by id and
        display name only; 404 otherwise. Rate limited per user, so it cannot list who is here."""
        user = await anyio.to_thread.run_sync(user_by_email, event_store, email)
        if user is None or user.disabled:
            raise NotFoundException("nobody with that email can be invited")
        return PersonView(str(user.id), user.display_name)
