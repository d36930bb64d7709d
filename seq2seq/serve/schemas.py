"""The JSON the server reads and writes (pydantic models; FastAPI's /openapi.json shows them)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

MAX_BEAM = 64  # a wider beam costs minutes per request on a CPU and buys no quality


def _one_line(text: str) -> str:
    # The translate tool reads a line break as the end of a line: such a text is several lines.
    if "\n" in text:
        raise ValueError("a line may not contain a line break; send each line as its own item")
    return text


Line = Annotated[StrictStr, AfterValidator(_one_line)]


class TranslateRequest(BaseModel):
    """Lines to translate (classify, tag, or generate from: whatever the checkpoint does)."""

    model_config = ConfigDict(extra="forbid")

    text: list[Line] = Field(description="input lines, one output line each; a blank line gives "
                                         "an empty one", examples=[["two young dogs play in the snow ."]])
    beam: Optional[int] = Field(None, ge=1, le=MAX_BEAM, strict=True,
                                description="beam width (1: greedy); default: the server's. "
                                            "Only translation models search.")


class TranslateResponse(BaseModel):
    translations: list[str] = Field(description="one line per input line, as seq2seq-translate "
                                                "prints it")


class Analysis(BaseModel):
    """One line's result with what the web page draws."""

    output: str = Field(description="the line seq2seq-translate prints")
    source_pieces: Optional[list[str]] = Field(None, description="translate: the source pieces + </s>")
    target_pieces: Optional[list[str]] = Field(None, description="translate: the output pieces + </s>")
    attention: Optional[list[list[float]]] = Field(
        None, description="translate, attention models: a row per target piece, a column per "
                          "source piece")
    score: Optional[float] = Field(None, description="translate: the hypothesis' score")
    words: Optional[list[str]] = Field(None, description="classify, tag: the words")
    tags: Optional[list[str]] = Field(None, description="tag: one tag per word")
    label: Optional[str] = Field(None, description="classify, joint tag models: the class")


class AnalyzeResponse(BaseModel):
    topology: str
    translations: list[str] = Field(description="the same lines /translate gives")
    analyses: list[Analysis]


class Health(BaseModel):
    status: str
    topology: str = Field(description="translate, classify, tag or generate")
    checkpoint: str
    beam: Optional[int] = Field(description="the default beam; null where the model does not search")
    max_lines: int
    max_chars: int
    max_beam: int
    batches: int = Field(description="model calls so far")
    requests: int = Field(description="requests answered by those calls")
    lines: int


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, naming the limit or field")
    limit: Optional[str] = Field(None, description="413: the limit exceeded (max_lines, max_chars, "
                                                   "max_body_bytes)")
    detail: Optional[list[dict]] = Field(None, description="422: the fields that failed validation")
