"""Completes the OpenAPI document Litestar generates, so that a client (or schemathesis) can
rely on it: every status an operation can answer is listed with its `application/problem+json`
body, request bodies that refuse unknown fields say `additionalProperties: false`, public
operations say they need no token, and uploads describe their multipart body.

Which statuses an operation gives follows from what it is: a body or parameters can be invalid
(400), an authenticated operation can be refused (401, 403), a path names something that may not
exist (404), a write can conflict or find the disk full (409, 507), every operation reads stores
that can be unavailable or behind (503). Handlers name what only they can give with the
`problems=(...)` option of their decorator; a rate-limit guard adds 429."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.routes import HTTPRoute

PROBLEM_MEDIA_TYPE = "application/problem+json"

_MEANING = {
    400: "The request is malformed: a parameter or body field is invalid; `errors` names each one.",
    401: "No valid token or session cookie, or the token was revoked.",
    403: "Signed in but not allowed: not a member, a role is missing, or a cookie-authenticated write lacks its CSRF token.",
    404: "Nothing with this id exists, or it is not visible to the caller.",
    409: "The request conflicts with the current state (a concurrent change, a state that forbids it, "
    "or a position beyond the log's head).",
    410: "The link has been used, has expired or was replaced.",
    413: "The body is larger than the server accepts.",
    415: "The body is not of a media type this operation accepts.",
    416: "The requested byte range lies outside the file.",
    429: "A rate limit or a daily quota is spent; `limit` or `quota` names it and `Retry-After` says when to try again.",
    503: "A store is unavailable or the read model has not yet reached the requested position; retry after `Retry-After`.",
    507: "The server's storage is full; nothing was recorded.",
}
_RETRY_AFTER = {429, 503, 507}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def problem_schema() -> Schema:
    """RFC 9457 problem details, with the members Chronicle adds; further members may appear."""
    text = Schema(type=OpenAPIType.STRING)
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail"],
        properties={
            "type": Schema(type=OpenAPIType.STRING, description="`about:blank`: the status says what kind of problem it is."),
            "title": text,
            "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
            "detail": Schema(type=OpenAPIType.STRING, description="What went wrong, for a person to read."),
            "errors": Schema(
                type=OpenAPIType.ARRAY,
                description="One entry per invalid field (400).",
                items=Schema(
                    type=OpenAPIType.OBJECT,
                    required=["field", "message"],
                    properties={"field": text, "message": text},
                ),
            ),
            "limit": Schema(
                type=[OpenAPIType.STRING, OpenAPIType.INTEGER], description="The rate limit or quota limit that was reached (429)."
            ),
            "quota": Schema(type=OpenAPIType.STRING, description="The daily quota that is spent (429)."),
            "used": Schema(type=OpenAPIType.INTEGER),
            "resets_at": Schema(one_of=[Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME), Schema(type=OpenAPIType.NULL)]),
        },
    )


def complete_openapi(app: Litestar, public_paths: Iterable[str]) -> OpenAPI:
    """Amends the app's (cached) OpenAPI document in place and returns it; `public_paths` are
    the patterns the authentication middleware lets through without a token."""
    public_patterns = [re.compile(p) for p in public_paths]
    document = app.openapi_schema
    components = document.components if isinstance(document.components, Components) else Components()
    document.components = components
    components.schemas = {**(components.schemas or {}), "Problem": problem_schema()}
    components.security_schemes = {
        "BearerToken": SecurityScheme(
            type="http", scheme="bearer", bearer_format="JWT", description="`Authorization: Bearer <token>` from `POST /api/auth/login`."
        ),
        "SessionCookie": SecurityScheme(
            type="apiKey",
            name="chronicle_token",
            security_scheme_in="cookie",
            description="The httpOnly cookie set by `POST /api/auth/session`; writes also need the `x-csrftoken` header.",
        ),
    }
    signed_in: list[SecurityRequirement] = [{"BearerToken": []}, {"SessionCookie": []}]
    document.security = signed_in
    (document.paths or {}).pop("/metrics", None)  # Prometheus's text format, for the scraper: not part of the API
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in (document.paths or {}):
            continue
        item = document.paths[route.path_format]  # type: ignore[index]
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                _complete_parameters(operation)
                public = bool(handler.opt.get("exclude_from_auth")) or any(p.match(route.path_format) for p in public_patterns)
                if public:
                    operation.security = []
                _complete_body_schema(document, handler)
                if handler.opt.get("multipart"):
                    operation.request_body = _multipart_body(handler.opt["multipart"])
                if handler.opt.get("revalidated"):
                    _revalidated(operation)
                statuses = _statuses(operation, handler, method, public)
                responses = operation.responses or {}
                for status in sorted(statuses):
                    responses[str(status)] = _problem_response(status)
                operation.responses = responses
    return document


def _revalidated(operation: Operation) -> None:
    """A view with an ETag (ADR-045): `If-None-Match` may be sent, and a current tag answers 304."""
    text = Schema(type=OpenAPIType.STRING)
    tag_headers = {
        "ETag": OpenAPIHeader(schema=text, description="A weak tag of the read-model state shown (absent while it is rebuilt)."),
        "Cache-Control": OpenAPIHeader(schema=text, description="`private, no-cache`: revalidate every time; shared caches keep nothing."),
    }
    operation.parameters = [
        *(operation.parameters or []),
        Parameter(
            name="If-None-Match",
            param_in="header",
            schema=text,
            description="ETags of copies the client holds; a current one answers 304 without a body.",
        ),
    ]
    responses = operation.responses or {}
    for status, response in responses.items():
        if status.startswith("2") and isinstance(response, OpenAPIResponse):
            response.headers = {**(response.headers or {}), **tag_headers}
    responses["304"] = OpenAPIResponse(description="Not Modified: the copy whose ETag was sent is current.", headers=tag_headers)
    operation.responses = responses


def _statuses(operation: Operation, handler: Any, method: str, public: bool) -> set[int]:
    statuses = {503}
    parameters = operation.parameters or []
    in_path = any(getattr(p, "param_in", None) == "path" for p in parameters)
    if parameters or operation.request_body is not None:
        statuses.add(400)
    if any(getattr(p, "name", None) == "after_position" for p in parameters):
        statuses.add(409)  # a position beyond the log's head
    if operation.request_body is not None:
        statuses.add(413)
    if in_path:
        statuses.add(404)
    if not public:
        statuses.add(401)
        guards = handler.resolve_guards()
        if in_path or method in _WRITES or any(not getattr(g, "rate_limit", None) for g in guards):
            statuses.add(403)
    if any(getattr(g, "rate_limit", None) for g in handler.resolve_guards()):
        statuses.add(429)
    if method in _WRITES:
        statuses.update({409, 507})
    statuses.update(handler.opt.get("problems", ()))
    return statuses


def _complete_parameters(operation: Operation) -> None:
    """Litestar drops a parameter's `ge=0` (a falsy bound) from the document, and cannot say
    "a position or a time"; both are stated here."""
    for parameter in operation.parameters or []:
        if not isinstance(parameter.schema, Schema):
            continue
        for bound in ("minimum", "maximum"):  # Litestar writes integer bounds as floats: 2**62 prints as 4.6e18
            value = getattr(parameter.schema, bound)
            if parameter.schema.type == OpenAPIType.INTEGER and isinstance(value, float) and value.is_integer():
                setattr(parameter.schema, bound, int(value))
        if parameter.name == "after_position":
            parameter.schema.minimum = 0
        elif parameter.name in ("since", "until"):
            parameter.schema = Schema(
                description="An ISO-8601 time (UTC when it has no offset); empty is the same as absent.",
                one_of=[Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME), Schema(type=OpenAPIType.STRING, max_length=0)],
            )
        elif parameter.name == "as_of":
            parameter.schema = Schema(
                description=parameter.schema.description,
                one_of=[
                    Schema(type=OpenAPIType.STRING, pattern="^[0-9]{1,18}$", description="A global position."),
                    Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME, description="An ISO-8601 time."),
                ],
            )


def _problem_response(status: int) -> OpenAPIResponse:
    headers = None
    if status in _RETRY_AFTER:
        headers = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="Seconds to wait before trying again.")}
    return OpenAPIResponse(
        description=f"{HTTPStatus(status).phrase}. {_MEANING[status]}",
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))},
        headers=headers,
    )


def _complete_body_schema(document: OpenAPI, handler: Any) -> None:
    """A body struct that forbids unknown fields is `additionalProperties: false`; a field whose
    `msgspec.Meta.extra` carries `json_schema` (a pattern, a format) gets it in the document."""
    data = handler.parsed_fn_signature.parameters.get("data")
    struct = getattr(data, "annotation", None) if data else None
    if not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
        return
    schema = (document.components.schemas or {}).get(struct.__name__) if isinstance(document.components, Components) else None
    if not isinstance(schema, Schema):
        return
    if struct.__struct_config__.forbid_unknown_fields:
        schema.additional_properties = False
    for field, hint in typing.get_type_hints(struct, include_extras=True).items():
        stated = _stated_json_schema(hint)
        target = (schema.properties or {}).get(field)
        if stated and isinstance(target, Schema):
            for branch in [target, *(target.one_of or [])]:
                if isinstance(branch, Schema) and branch.type != OpenAPIType.NULL:
                    for key, value in stated.items():
                        setattr(branch, key, value() if callable(value) else value)


def _stated_json_schema(hint: Any) -> dict[str, Any]:
    """What a field's `msgspec.Meta` states: its `extra["json_schema"]`, and its numeric bounds
    (Litestar leaves out a bound of 0, being falsy)."""
    stated: dict[str, Any] = {}
    for part in [hint, *typing.get_args(hint)]:
        for meta in getattr(part, "__metadata__", ()):
            if isinstance(meta, msgspec.Meta):
                stated.update({k: v for k, v in (("minimum", meta.ge), ("maximum", meta.le)) if v is not None})
                stated.update((meta.extra or {}).get("json_schema", {}))
    return stated


def _multipart_body(fields: Iterable[tuple[str, Schema, bool]]) -> RequestBody:
    listed = list(fields)
    return RequestBody(
        required=True,
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={name: schema for name, schema, _ in listed},
                    additional_properties=False,
                    required=[name for name, _, required in listed if required],
                )
            )
        },
    )


def binary_file() -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, min_length=1)


def uuid_text() -> Schema:
    return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)
