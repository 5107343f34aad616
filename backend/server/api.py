"""The server's HTTP API, version 1 (FastAPI; the OpenAPI description is generated from this).

    GET    /v1/status                       the server, its replicas and its queue
    POST   /v1/jobs                         submit a job (the job file's JSON, in the request)
    GET    /v1/jobs                         the jobs the server holds
    GET    /v1/jobs/{id}                    one job: state, attempts, replica, outcome, files
    GET    /v1/jobs/{id}/events?after=N     its events as JSON lines, from event N+1, live
    POST   /v1/jobs/{id}/cancel             stop it at its next step boundary
    DELETE /v1/jobs/{id}                    cancel it if it runs, and forget it and its files
    GET    /v1/jobs/{id}/files/{file}       the take: video, sidecar or png (a zip of the frames)
    GET    /v1/openapi.json                 this description

Every request needs `Authorization: Bearer TOKEN` (checked in constant time against the token's
SHA-256, before routing); a wrong or missing token is a 401 with one sentence. Bodies are capped
(413) and the job is validated with the same code as `python -m backend validate` (422) before
it goes anywhere near a GPU. Every failure is JSON `{"code", "message", "hint"?}`: one sentence,
never a traceback. The work itself is done by the `service` (backend/server/gateway.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .. import __version__
from .. import job as jobfile
from . import API_VERSION
from .book import JOB_ID, JobRecord

log = logging.getLogger("ray.serve")

PREFIX = f"/v{API_VERSION}"
FILE_ROLES = {"video": "video/mp4", "sidecar": "application/json", "png": "application/zip"}
# Files up to this size are answered in one piece (read whole); larger ones are streamed.
INLINE_FILE_BYTES = 8 << 20
_ECHO = 60  # at most this many characters of anything a client sent come back in a message


class ApiError(Exception):
    """A refusal: HTTP status, a code from docs/server.md and one sentence."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **({"hint": self.hint} if self.hint else {})}


class Service(Protocol):
    """What the routes need from the gateway."""

    max_request_bytes: int
    token_sha256: str

    def submit(
        self, job: dict[str, Any], *, png: bool, detach: bool, request_key: str | None = None
    ) -> tuple[JobRecord, bool]: ...
    def record(self, job_id: str) -> JobRecord: ...
    def summary(self, record: JobRecord) -> dict[str, Any]: ...
    def jobs(self) -> list[dict[str, Any]]: ...
    def follow(self, record: JobRecord, after: int) -> AsyncIterator[bytes]: ...
    def cancel(self, record: JobRecord) -> None: ...
    async def forget(self, record: JobRecord) -> None: ...
    def file(self, record: JobRecord, role: str) -> tuple[str, dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------- documented shapes


class Problem(BaseModel):
    code: str = Field(description="What went wrong, for programs (docs/server.md lists the codes).")
    message: str = Field(description="One sentence for people.")
    hint: str | None = Field(None, description="What to do about it, when there is more to say.")


class SubmitRequest(BaseModel):
    """The body of POST /v1/jobs (documentation only: the route reads and checks the JSON itself,
    with the job file's own validator)."""

    model_config = ConfigDict(extra="forbid")
    job: dict[str, Any] = Field(description="The job file's JSON (docs/job-file.md; schema: Job).")
    png: bool = Field(False, description="Also make the lossless PNG frames (fetched as one zip).")
    detach: bool = Field(
        False,
        description="Keep running when no client follows the job's events; otherwise a job nobody "
        "follows for the server's grace period (30 s by default) is cancelled.",
    )


class JobCreated(BaseModel):
    id: str = Field(description="The job's id, made by the server (32 hex digits).")
    state: str = Field(description="queued")
    position: int | None = Field(description="1 for the next job to start; null once it runs.")
    events: str = Field(description="Where to follow its events.")
    job: str = Field(description="Where to read its state.")


class FileInfo(BaseModel):
    name: str
    bytes: int
    sha256: str


class JobSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    state: str = Field(description="queued, running, done, failed, cancelled or lost")
    shot: str = Field(description="The job's shot.scene_name (the client names its take after it).")
    engine: str
    png: bool
    detach: bool
    created: float
    started: float | None
    finished: float | None
    attempts: int = Field(description="How many times a replica started it (more than 1 after a replica was lost).")
    replica: dict[str, Any] | None = Field(description="The replica that ran (or runs) it.")
    stage: str | None
    fraction: float | None
    position: int | None
    files: dict[str, FileInfo] | None = Field(description="video, sidecar and (with png) png, once done.")
    outcome: dict[str, Any] | None = Field(description="The final event (result, error or cancelled).")
    last_seq: int = Field(description="The number of the job's last event so far.")


class ReplicaInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    replica: str
    state: str = Field(description="loading, idle, busy or cold (its engine will load with the next job)")
    job: str | None
    warm: bool = Field(description="The engine is loaded (jobs start without loading the model).")
    engine: str
    memory_mode: str | None
    device: dict[str, Any] = Field(description="type and name (the GPU's), vram_bytes on a GPU.")
    node: str
    pid: int
    jobs_done: int


class ServerStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    api: int
    version: str
    engine: str
    scaling: dict[str, Any]
    replicas: list[ReplicaInfo]
    queue: list[dict[str, Any]] = Field(description="Jobs waiting for a replica, first to start first.")
    running: list[dict[str, Any]]
    limits: dict[str, Any]


# ---------------------------------------------------------------- the token and the size cap


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Guard:
    """ASGI middleware that runs before routing: no request reaches a route (or learns which
    routes exist) without the token, and a declared body over the cap is refused unread."""

    def __init__(self, app: Any, token_sha256: str, max_request_bytes: int):
        self.app = app
        self.expected = token_sha256.encode("ascii")
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        problem = self._token_problem(headers.get(b"authorization", b""))
        if problem:
            response = JSONResponse(
                Problem(code="unauthorized", message=problem).model_dump(exclude_none=True),
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="trajmaster"'},
            )
            return await response(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_request_bytes):
            return await _problem_response(too_large(self.max_request_bytes))(scope, receive, send)
        return await self.app(scope, receive, send)

    def _token_problem(self, header: bytes) -> str | None:
        scheme, _, presented = header.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return (
                "This server needs its access token: send it as 'Authorization: Bearer TOKEN' "
                "(the server printed it when it first started; it is in the server's token file)."
            )
        digest = token_digest(presented.strip()).encode("ascii")
        if not self.expected or not hmac.compare_digest(digest, self.expected):
            return "The access token was not accepted; use the one in the server's token file."
        return None


def _read_small_file(path: str, limit: int) -> bytes | None:
    """The file's bytes if it has at most `limit` of them, else None (it is streamed instead)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"The request is larger than this server accepts ({limit} bytes).")


def _problem_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def _short(text: object) -> str:
    text = str(text)
    return text if len(text) <= _ECHO else text[: _ECHO - 3] + "..."


# What an Idempotency-Key may be: the client's own random token, never a path or a name.
_REQUEST_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")


def request_key(request: Request) -> str | None:
    """The request's Idempotency-Key header (None without one), or 400 for a malformed one."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _REQUEST_KEY.fullmatch(key):
        raise ApiError(400, "bad_request", "The Idempotency-Key header must be 16 to 128 letters, digits, '-' or '_'.")
    return key


def parse_submission(body: bytes) -> tuple[dict[str, Any], bool, bool]:
    """The body of POST /v1/jobs -> (job, png, detach), or ApiError. The job is checked by the job
    file's own validator (schema and meaning), as `python -m backend validate` checks a file."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "The request body is not UTF-8 text; send the job as JSON.") from None
    try:
        doc = jobfile.parse(text)
    except jobfile.JobError as exc:
        raise ApiError(400, "bad_request", f"The request body is not a JSON object as expected: {exc}.") from None
    except (RecursionError, ValueError):
        raise ApiError(
            400, "bad_request", "The request body is not JSON this server can read (nested too deeply?)."
        ) from None
    unknown = sorted(set(doc) - set(SubmitRequest.model_fields))
    if unknown:
        names = ", ".join(repr(_short(k)) for k in unknown[:5])
        raise ApiError(400, "bad_request", f"The request has unknown fields ({names}); send job, png and detach only.")
    job = doc.get("job")
    if not isinstance(job, dict):
        raise ApiError(400, "bad_request", "The request needs a 'job' object: the job file's JSON.")
    flags = {}
    for key in ("png", "detach"):
        value = doc.get(key, False)
        if not isinstance(value, bool):
            raise ApiError(400, "bad_request", f"'{key}' must be true or false.")
        flags[key] = value
    try:
        jobfile.validate(job)
    except jobfile.JobError as exc:
        hint = "All problems: " + "; ".join(exc.problems) if len(exc.problems) > 1 else None
        raise ApiError(422, "bad_job", f"The job is not valid: {exc}.", hint) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise ApiError(422, "bad_job", f"The job could not be checked ({type(exc).__name__}).") from None
    return job, flags["png"], flags["detach"]


# ---------------------------------------------------------------- the application
# Routes return JSONResponse themselves: the response models document the answers (OpenAPI)
# without pydantic re-validating every status poll.

_REFUSALS = {
    401: {"model": Problem, "description": "No token, or not this server's token."},
    404: {"model": Problem, "description": "No such job (never submitted here, forgotten, or expired)."},
    422: {"model": Problem, "description": "A parameter is not valid (e.g. `after` is not a whole number >= 0)."},
}
_JOB_PATH = f"{PREFIX}/jobs/{{job_id}}"


def create_app(service: Service | None) -> FastAPI:
    """The FastAPI application around `service`. With None it serves nothing but can still print
    its OpenAPI description (`python -m backend server --openapi FILE`)."""
    app = FastAPI(
        title="TrajMaster Previz server",
        version=f"{API_VERSION}.0 (backend {__version__})",
        description="A shared pool of GPU replicas that turn TrajMaster job files into takes. "
        "See docs/server.md for the protocol (events, re-attaching, retention, errors).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # the interactive pages load scripts from a CDN: not on a studio's server
        redoc_url=None,
    )
    if service is not None:
        app.add_middleware(Guard, token_sha256=service.token_sha256, max_request_bytes=service.max_request_bytes)
    _add_error_handlers(app)

    def lookup(job_id: str) -> JobRecord:
        if not JOB_ID.fullmatch(job_id):
            raise ApiError(404, "unknown_job", f"There is no job {_short(job_id)!r} on this server.")
        assert service is not None
        return service.record(job_id)

    @app.get(f"{PREFIX}/status", response_model=ServerStatus, responses=_REFUSALS, summary="The server and its queue")
    async def status() -> JSONResponse:
        """Replicas (device, state, current job, warm or loading), the queue in order, the jobs
        running, the scaling and the limits. `python -m backend server-status` prints this."""
        return JSONResponse(service.status())

    @app.post(
        f"{PREFIX}/jobs",
        status_code=201,
        response_model=JobCreated,
        summary="Submit a job",
        responses={
            **_REFUSALS,
            200: {
                "model": JobCreated,
                "description": "Sent again with the Idempotency-Key of an earlier submission: that job, not a new one.",
            },
            400: {
                "model": Problem,
                "description": "Not JSON, not the expected object, or a malformed Idempotency-Key.",
            },
            413: {"model": Problem, "description": "Larger than the server's request limit."},
            422: {
                "model": Problem,
                "description": "The job is not valid (bad_job), not for this engine, or its Idempotency-Key was used "
                "for another job (key_reused).",
            },
            429: {"model": Problem, "description": "The server's queue is full."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}}},
            }
        },
    )
    async def submit(request: Request) -> JSONResponse:
        """Queue a job. The job travels in the request (the server never reads a client's paths)
        and is validated before it is queued; its id is made by the server. With an
        `Idempotency-Key` header (a random token of the client's, 16-128 characters), sending the
        same job again with the same key (its answer was lost: a timeout, a dropped connection)
        answers 200 with the job queued the first time instead of queueing it twice."""
        key = request_key(request)
        body = await _read_body(request, service.max_request_bytes)
        # Validating a job takes tens of milliseconds of CPU: off the event loop, which serves everyone.
        job, png, detach = await asyncio.to_thread(parse_submission, body)
        record, new = service.submit(job, png=png, detach=detach, request_key=key)
        summary = service.summary(record)
        created = {
            "id": record.id,
            "state": record.state,
            "position": summary["position"],
            "events": f"{_JOB_PATH.format(job_id=record.id)}/events",
            "job": _JOB_PATH.format(job_id=record.id),
        }
        return JSONResponse(created, status_code=201 if new else 200)

    @app.get(f"{PREFIX}/jobs", response_model=list[JobSummary], responses=_REFUSALS, summary="The jobs held")
    async def jobs() -> JSONResponse:
        """Every job the server holds (active ones, and finished ones until they expire)."""
        return JSONResponse(service.jobs())

    @app.get(_JOB_PATH, response_model=JobSummary, responses=_REFUSALS, summary="One job")
    async def job(job_id: str) -> JSONResponse:
        return JSONResponse(service.summary(lookup(job_id)))

    @app.get(
        f"{_JOB_PATH}/events",
        summary="Follow a job's events",
        response_class=StreamingResponse,
        responses={
            **_REFUSALS,
            200: {
                "description": "JSON lines: the job's events after `after`, then new ones as they come, ending "
                "with its final event (result, error or cancelled). Each has `job` and `seq` (1, 2, ...); "
                "heartbeat lines (no `seq`) keep a quiet link alive.",
                "content": {"application/x-ndjson": {}},
            },
        },
    )
    async def events(
        job_id: str, after: int = Query(0, ge=0, description="The last `seq` already seen (0: from the start).")
    ) -> StreamingResponse:
        """Following a job keeps it alive: a job that nobody follows for the grace period is
        cancelled unless it was submitted with `detach`. Re-attach with `after` = the last seq."""
        record = lookup(job_id)
        return StreamingResponse(
            service.follow(record, after),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post(f"{_JOB_PATH}/cancel", status_code=202, response_model=JobSummary, responses=_REFUSALS, summary="Cancel")
    async def cancel(job_id: str) -> JSONResponse:
        """A queued job never starts; a running one stops at its next step boundary and leaves
        nothing. The `cancelled` event ends its stream. A finished job is unchanged."""
        record = lookup(job_id)
        service.cancel(record)
        return JSONResponse(service.summary(record), status_code=202)

    @app.delete(_JOB_PATH, status_code=204, responses=_REFUSALS, summary="Forget a job")
    async def forget(job_id: str) -> None:
        """Cancel the job if it has not finished, then delete its events and files."""
        await service.forget(lookup(job_id))

    @app.get(
        f"{_JOB_PATH}/files/{{role}}",
        summary="Download the take",
        responses={
            **_REFUSALS,
            200: {
                "description": "video (MP4), sidecar (JSON) or png (a zip of frame_0001.png ...). "
                "X-Content-SHA256 carries the file's SHA-256.",
                "content": {m: {} for m in FILE_ROLES.values()},
            },
            409: {"model": Problem, "description": "The job has not finished with a take."},
        },
    )
    async def file(job_id: str, role: str) -> FileResponse:
        record = lookup(job_id)
        if role not in FILE_ROLES:
            raise ApiError(404, "not_found", f"A take has no file {_short(role)!r}; ask for video, sidecar or png.")
        path, info = service.file(record, role)
        headers = {"X-Content-SHA256": info["sha256"], "Cache-Control": "no-store"}
        content = await asyncio.to_thread(_read_small_file, path, INLINE_FILE_BYTES)
        if content is None:
            return FileResponse(path, media_type=FILE_ROLES[role], filename=info["name"], headers=headers)
        # A small file goes in one piece: one read and one message through Serve's proxy, where
        # FileResponse takes a thread hop and a message for each 64 kB (a preview take's video
        # arrives in about half the time).
        headers["Content-Disposition"] = f'attachment; filename="{info["name"]}"'
        return Response(content, media_type=FILE_ROLES[role], headers=headers)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return _problem_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = ApiError(
                404, "not_found", f"There is nothing at {_short(request.url.path)}; the API is under {PREFIX}/."
            )
        elif exc.status_code == 405:
            error = ApiError(405, "bad_method", f"{request.method} is not used at {_short(request.url.path)}.")
        else:
            error = ApiError(exc.status_code, "bad_request", "The request was refused.")
        return _problem_response(error)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        message = f"The request's {_short(where)} is not valid ({_short(first.get('msg', 'invalid'))})."
        return _problem_response(ApiError(422, "bad_request", message))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected failure serving %s %s", request.method, request.url.path)
        error = ApiError(500, "internal", "The server failed unexpectedly; its log has the details.")
        return _problem_response(error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, openapi_version="3.1.0"
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["SubmitRequest"] = SubmitRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["SubmitRequest"]["properties"]["job"] = {"$ref": "#/components/schemas/Job"}
    schemas.update(_job_schemas())
    components["securitySchemes"] = {
        "token": {"type": "http", "scheme": "bearer", "description": "The token in the server's token file."}
    }
    schema["security"] = [{"token": []}]
    return schema


def _job_schemas() -> dict[str, Any]:
    """backend/job.schema.json as OpenAPI components: Job, and its $defs as Job_{name}."""
    job = json.loads(jobfile.SCHEMA_PATH.read_text(encoding="utf-8"))
    defs = job.pop("$defs", {})
    for key in ("$schema", "$id"):
        job.pop(key, None)

    def relink(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ("#/components/schemas/Job_" + v.removeprefix("#/$defs/") if k == "$ref" else relink(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [relink(v) for v in node]
        return node

    out = {"Job": relink(job)}
    out.update({f"Job_{name}": relink(d) for name, d in defs.items()})
    return out
