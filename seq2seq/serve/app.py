"""The FastAPI application: /health, /translate, /analyze, the OpenAPI schema and the web page.

Every error is a JSON body with an ``error`` field: 400 for a body that is not JSON, 413 for a
request over a limit (naming it), 422 for a field of the wrong type or range, 500 (without a
traceback) when the model fails.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from seq2seq import __version__
from seq2seq.errors import check_range
from seq2seq.serve.batching import Batcher
from seq2seq.serve.model import ANALYSES, OUTPUTS, ServedModel
from seq2seq.serve.schemas import (
    MAX_BEAM,
    AnalyzeResponse,
    ErrorBody,
    Health,
    TranslateRequest,
    TranslateResponse,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Limits:
    """What one request may hold (``--max-lines``, ``--max-chars``)."""

    max_lines: int = 64
    max_chars: int = 1000

    def __post_init__(self) -> None:
        check_range("--max-lines", self.max_lines, 1)
        check_range("--max-chars", self.max_chars, 1)

    @property
    def max_body_bytes(self) -> int:
        """The largest body a request within the limits can have: 12 bytes per character (JSON's
        escape of a character beyond the BMP as two \\uXXXX), plus quotes and separators."""
        return self.max_lines * (12 * self.max_chars + 8) + 1024


class LimitExceeded(Exception):
    """A request over one of the server's limits: answered 413."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def check_limits(body: TranslateRequest, limits: Limits) -> None:
    """LimitExceeded naming the first limit ``body`` is over."""
    if len(body.text) > limits.max_lines:
        raise LimitExceeded("max_lines", f"{len(body.text)} lines; a request may hold at most "
                                         f"{limits.max_lines} (max_lines)")
    for number, line in enumerate(body.text, start=1):
        if len(line) > limits.max_chars:
            raise LimitExceeded("max_chars", f"line {number} has {len(line)} characters; at most "
                                             f"{limits.max_chars} per line (max_chars)")


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(ErrorBody(error=message, **extra).model_dump(exclude_none=True),
                        status_code=status)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON"},
    411: {"model": ErrorBody, "description": "a POST without a Content-Length header"},
    413: {"model": ErrorBody, "description": "over --max-lines, --max-chars or the body size"},
    422: {"model": ErrorBody, "description": "a field of the wrong type or range"},
    500: {"model": ErrorBody, "description": "the model failed"},
}


def create_app(model: ServedModel, limits: Limits = Limits(), batch_wait_ms: float = 5.0,
               max_batch_lines: int = 64) -> FastAPI:
    """The application serving ``model``: requests within ``limits``, batched together for up to
    ``batch_wait_ms`` or ``max_batch_lines`` lines."""
    batcher = Batcher(model.run, batch_wait_ms, max_batch_lines)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="seq2seq", version=__version__, lifespan=lifespan,
                  description=f"A {model.topology} checkpoint ({model.name}): lines in, one output "
                              "line per line, as seq2seq-translate prints them.")
    app.state.batcher, app.state.model, app.state.limits = batcher, model, limits

    @app.middleware("http")
    async def refuse_large_bodies(request: Request,
                                  call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Before the body is read: a client cannot make the server buffer gigabytes.
        size = request.headers.get("content-length", "")
        if request.method == "POST" and not size.isdigit():  # chunked: no size to check first
            return error(411, "a POST needs a Content-Length header (a chunked body has none)",
                         limit="max_body_bytes")
        if size.isdigit() and int(size) > limits.max_body_bytes:
            return error(413, f"a body of {size} bytes; at most {limits.max_body_bytes} "
                              "(max_body_bytes)", limit="max_body_bytes")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        malformed = [p for p in problems if p.get("type") == "json_invalid"]
        if malformed:
            return error(400, f"the body is not valid JSON: {malformed[0].get('msg', '')}".strip())
        if any(p.get("type") == "missing" and tuple(p.get("loc", ())) == ("body",) for p in problems):
            return error(400, 'no body: expected a JSON object such as {"text": ["a line"]}')
        detail = [{"loc": [str(part) for part in p.get("loc", ())], "msg": str(p.get("msg", "")),
                   "type": str(p.get("type", ""))} for p in problems]
        first = detail[0] if detail else {"loc": [], "msg": "invalid"}
        return error(422, f"{'.'.join(first['loc'][1:]) or 'body'}: {first['msg']}", detail=detail)

    @app.exception_handler(LimitExceeded)
    async def over_limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        return error(413, str(exc), limit=exc.limit)

    async def run(kind: str, body: TranslateRequest) -> list[Any] | JSONResponse:
        check_limits(body, limits)
        try:
            return await batcher.submit(model.batch_key(kind, body.beam), body.text)
        except Exception:  # logged with its traceback by the batcher; the client learns no more
            return error(500, "the model failed on this request; the server's log has the details")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        stats = batcher.stats
        return Health(status="ok", topology=model.topology, checkpoint=model.name,
                      beam=model.default_beam, max_lines=limits.max_lines,
                      max_chars=limits.max_chars, max_beam=MAX_BEAM, batches=stats.batches,
                      requests=stats.requests, lines=stats.lines)

    @app.post("/translate", response_model=TranslateResponse, responses=ERRORS)
    async def translate(body: TranslateRequest) -> TranslateResponse | JSONResponse:
        """One output line per input line: exactly what seq2seq-translate prints."""
        outputs = await run(OUTPUTS, body)
        if isinstance(outputs, JSONResponse):
            return outputs
        return TranslateResponse(translations=outputs)

    @app.post("/analyze", response_model=AnalyzeResponse, response_model_exclude_none=True,
              responses=ERRORS)
    async def analyze(body: TranslateRequest) -> AnalyzeResponse | JSONResponse:
        """The lines /translate gives, with the pieces and attention of each translation, or the
        words, tags and class of each labelled utterance (what the web page draws)."""
        analyses = await run(ANALYSES, body)
        if isinstance(analyses, JSONResponse):
            return analyses
        return AnalyzeResponse(topology=model.topology,
                               translations=[a["output"] for a in analyses], analyses=analyses)

    return app
