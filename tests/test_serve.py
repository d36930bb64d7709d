"""seq2seq-serve: the batcher, the API's answers and errors, and the same lines as seq2seq-translate."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import pytest

from seq2seq.cli.translate import main as translate_main
from seq2seq.pipeline import run_training
from seq2seq.serve.app import Limits, create_app
from seq2seq.serve.batching import Batcher
from seq2seq.serve.model import ServedModel
from seq2seq.topologies.base import PredictOptions
from tests.conftest import compose_train
from tests.test_faults import FAST
from tests.test_smoke import tiny_overrides
from tests.test_topologies import overrides_for

with warnings.catch_warnings():  # starlette asks for httpx2, a rename of httpx; httpx works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


# ---- the batcher, on a function that records its calls ----

class Recorder:
    """A batch function: upper-cases each line and records (key, lines) of each call."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[Any, list[str]]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, key: Any, lines: list[str]) -> list[str]:
        self.calls.append((key, list(lines)))
        self.threads.add(threading.current_thread().name)
        if self.fail_on and self.fail_on in lines:
            raise RuntimeError("model failure")
        return [f"{key}:{line.upper()}" for line in lines]


def submit_all(batcher: Batcher, requests: Sequence[tuple[Any, list[str]]]) -> list[Any]:
    async def scenario() -> list[Any]:
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(key, lines) for key, lines in requests),
                                        return_exceptions=True)
        finally:
            await batcher.stop()
    return asyncio.run(scenario())


def test_concurrent_requests_share_batches_and_get_their_own_results():
    run = Recorder()
    batcher = Batcher(run, wait_ms=50, max_lines=1000)
    requests = [(1, [f"line {i}", f"more {i}"]) for i in range(20)]
    results = submit_all(batcher, requests)
    assert results == [[f"1:LINE {i}", f"1:MORE {i}"] for i in range(20)]
    assert len(run.calls) == batcher.stats.batches == 1  # all arrived within the wait
    assert batcher.stats.requests == 20 and batcher.stats.lines == 40
    assert len(run.threads) == 1 and run.threads != {threading.current_thread().name}


def test_requests_of_different_keys_never_share_a_batch():
    run = Recorder()
    requests = [(beam, [f"{beam}-{i}"]) for i in range(6) for beam in (1, 5)]
    results = submit_all(Batcher(run, wait_ms=50), requests)
    assert results == [[f"{key}:{lines[0].upper()}"] for key, lines in requests]
    assert sorted(key for key, _ in run.calls) == [1, 5]
    for key, lines in run.calls:
        assert all(line.startswith(f"{key}-") for line in lines)


def test_a_batch_holds_at_most_max_lines_unless_one_request_is_larger():
    run = Recorder()
    requests = [(0, ["a", "b", "c"]) for _ in range(5)] + [(0, list("abcdefgh"))]
    results = submit_all(Batcher(run, wait_ms=50, max_lines=7), requests)
    assert results[-1] == [f"0:{c.upper()}" for c in "abcdefgh"]
    sizes = [len(lines) for _, lines in run.calls]
    assert sum(sizes) == 23 and sizes == [6, 6, 3, 8]  # whole requests, in arrival order


def test_a_failing_batch_fails_its_requests_only():
    run = Recorder(fail_on="boom")
    batcher = Batcher(run, wait_ms=0)

    async def scenario() -> tuple[Any, Any]:
        await batcher.start()
        try:
            failed = await asyncio.gather(batcher.submit(0, ["boom"]), return_exceptions=True)
            return failed[0], await batcher.submit(0, ["fine"])
        finally:
            await batcher.stop()
    failed, fine = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and fine == ["0:FINE"]


# ---- the API's errors, on a stand-in predictor ----

class Echo:
    """A stand-in classifier: the line upper-cased; a line "boom" breaks it."""

    model = None

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        if "boom" in lines:
            raise RuntimeError("secret internal detail")
        return [line.upper() for line in lines]


@pytest.fixture
def echo_client():
    app = create_app(ServedModel(Echo(), "classify", "echo.pt"), Limits(max_lines=4, max_chars=20),
                     batch_wait_ms=1)
    with TestClient(app) as client:
        yield client


def test_health_names_the_model_and_its_limits(echo_client):
    answer = echo_client.get("/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["topology"] == "classify" and health["checkpoint"] == "echo.pt"
    assert health["max_lines"] == 4 and health["max_chars"] == 20 and health["beam"] is None


def test_translate_answers_one_line_per_line(echo_client):
    answer = echo_client.post("/translate", json={"text": ["a b", "", "c"]})
    assert answer.status_code == 200 and answer.json() == {"translations": ["A B", "", "C"]}
    assert echo_client.post("/translate", json={"text": []}).json() == {"translations": []}


@pytest.mark.parametrize("body, status, named", [
    ('{"text": ["a"', 400, "not valid JSON"),
    ("", 400, "no body"),
    ('{"text": "a line"}', 422, "text"),
    ('{"text": ["a", 3]}', 422, "text.1"),
    ('{"text": ["a"], "beam": 0}', 422, "beam"),
    ('{"text": ["a"], "beam": 65}', 422, "beam"),
    ('{"text": ["a"], "beam": "5"}', 422, "beam"),
    ('{"text": ["a"], "beam": 2.5}', 422, "beam"),
    ('{"text": ["a\\nb"]}', 422, "line break"),
    ('{"text": ["a"], "beams": 2}', 422, "beams"),
    ('["a"]', 422, "body"),
    (json.dumps({"text": ["a"] * 5}), 413, "max_lines"),
    (json.dumps({"text": ["a", "x" * 21]}), 413, "max_chars"),
    (json.dumps({"text": ["x" * 20] * 4}), 200, None),  # at the limits: answered
])
def test_bad_requests_are_answered_4xx_with_a_json_error(echo_client, body, status, named):
    for route in ("/translate", "/analyze"):
        answer = echo_client.post(route, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status, (route, answer.text)
        if named is not None:
            assert named in answer.json()["error"]
            if status == 413:
                assert answer.json()["limit"] == named


def test_a_body_larger_than_any_request_within_the_limits_is_refused_before_it_is_read(echo_client):
    answer = echo_client.post("/translate", content=b'{"text": ["' + b"x" * 100_000 + b'"]}',
                              headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["limit"] == "max_body_bytes"


def test_a_chunked_body_without_a_length_is_refused_before_it_is_read(echo_client):
    chunks = iter([b'{"text": ["', b"x" * 100_000, b'"]}'])
    answer = echo_client.post("/translate", content=chunks,
                              headers={"content-type": "application/json"})
    assert answer.status_code == 411 and "Content-Length" in answer.json()["error"]


def test_a_model_failure_is_a_json_500_without_its_traceback(echo_client, caplog):
    answer = echo_client.post("/translate", json={"text": ["boom"]})
    assert answer.status_code == 500
    assert "error" in answer.json()
    assert "secret" not in answer.text and "Traceback" not in answer.text
    assert "secret internal detail" in caplog.text  # the server's log has it
    assert echo_client.post("/translate", json={"text": ["after"]}).json() == {"translations": ["AFTER"]}


class Blocking(Echo):
    """Echo that holds the model until the test lets it go."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def predict(self, lines: Sequence[str], line_offset: int = 0) -> list[str]:
        self.started.set()
        assert self.release.wait(timeout=30)
        return super().predict(lines, line_offset)


def test_the_server_answers_while_the_model_works():
    blocking = Blocking()
    with TestClient(create_app(ServedModel(blocking, "classify", "b.pt"), batch_wait_ms=0)) as client:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.post, "/translate", json={"text": ["a"]})
            assert blocking.started.wait(timeout=30)
            assert client.get("/health").status_code == 200  # the event loop is not blocked
            assert not pending.done()
            blocking.release.set()
            assert pending.result(timeout=30).json() == {"translations": ["A"]}


def test_openapi_schema_documents_the_routes_and_models(echo_client):
    schema = echo_client.get("/openapi.json").json()
    assert {"/health", "/translate", "/analyze"} <= set(schema["paths"])
    models = schema["components"]["schemas"]
    assert {"TranslateRequest", "TranslateResponse", "AnalyzeResponse", "ErrorBody"} <= set(models)
    assert models["TranslateRequest"]["properties"]["text"]["type"] == "array"
    assert "413" in schema["paths"]["/translate"]["post"]["responses"]
    assert echo_client.get("/docs").status_code == 200


def test_the_page_and_its_files_are_served_from_the_package(echo_client):
    page = echo_client.get("/")
    assert page.status_code == 200 and 'id="translate"' in page.text
    for name in ("app.js", "style.css"):
        assert echo_client.get(f"/static/{name}").status_code == 200
    for text in (page.text, echo_client.get("/static/app.js").text):
        assert "http://" not in text and "https://" not in text  # works offline


# ---- tiny trained checkpoints of every topology: the same lines as seq2seq-translate ----

INPUTS = {
    "translate": ["you want seven apples", "", "they paint five small lamps", "i see 3 cars",
                  "nine and twelve"],
    "classify": ["play some music by nina simone", "", "what is the weather in oslo", "  "],
    "tag": ["play some music by the beatles", "what is the weather in new york", ""],
    "generate": ["PlayMusic", "GetWeather", "NoSuchIntent", ""],
}


def train_tiny(tmp: Path, topology: str) -> Path:
    """A checkpoint of ``topology`` trained for a few steps (seconds)."""
    if topology == "translate":
        overrides = tiny_overrides(tmp) + FAST + ["trainer.max_steps=2", "data.max_length=20"]
    else:
        experiment = {"classify": "snips_intent", "tag": "snips_slots", "generate": "snips_generate"}
        overrides = overrides_for(tmp, experiment[topology]) + ["trainer.max_steps=3",
                                                                "report.bootstrap_resamples=0"]
        if topology == "classify":
            overrides += ["model=classifier", "model.encoder.embedding_dim=16",
                          "model.encoder.hidden_size=16", "topology.auxiliary_tags=false",
                          "topology.augment_copies=0", "trainer.early_stopping_metric=accuracy"]
    run_training(compose_train(overrides), tmp / "run")
    return tmp / "run" / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """topology -> its tiny checkpoint, each trained when a test first asks for it."""
    trained: dict[str, Path] = {}

    def get(topology: str) -> Path:
        if topology not in trained:
            trained[topology] = train_tiny(tmp_path_factory.mktemp(topology), topology)
        return trained[topology]
    return get


# sampling would make every call differ: generate is compared greedy
TOOL_OPTIONS = {"generate": ["--temperature", "0"]}


def translate_tool(checkpoint: Path, lines: list[str], *options: str) -> list[str]:
    out = io.StringIO()
    data = "".join(line + "\n" for line in lines).encode()
    assert translate_main(["--checkpoint", str(checkpoint), *options], stdin=io.BytesIO(data),
                          stdout=out) == 0
    return out.getvalue().split("\n")[:-1]


def serve(checkpoint: Path, wait_ms: float = 5.0, **options: Any) -> TestClient:
    model = ServedModel.load([checkpoint], PredictOptions(**options))
    return TestClient(create_app(model, Limits(), batch_wait_ms=wait_ms))


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["translate", "classify", "tag", "generate"])
def test_translate_gives_the_lines_of_the_translate_tool(checkpoints, topology):
    checkpoint = checkpoints(topology)
    options = {"temperature": 0.0} if topology == "generate" else {}
    with serve(checkpoint, **options) as client:
        health = client.get("/health").json()
        assert health["topology"] == topology and health["checkpoint"] == "best.pt"
        answer = client.post("/translate", json={"text": INPUTS[topology]})
        assert answer.status_code == 200, answer.text
        expected = translate_tool(checkpoint, INPUTS[topology], *TOOL_OPTIONS.get(topology, []))
        assert answer.json()["translations"] == expected
        assert len(expected) == len(INPUTS[topology]) and any(expected)
        analyzed = client.post("/analyze", json={"text": INPUTS[topology]}).json()
        assert analyzed["translations"] == expected and analyzed["topology"] == topology
    for line, analysis in zip(INPUTS[topology], analyzed["analyses"]):
        if topology in ("classify", "tag") and line.strip():
            assert analysis["words"] == line.split()
            assert analysis["label"] == analysis["output"].split("\t")[0]
        if topology == "tag" and line.strip():
            assert analysis["tags"] == analysis["output"].split("\t")[1].split()
        if topology == "classify":
            assert "tags" not in analysis


@pytest.mark.slow
def test_a_request_beam_gives_the_translate_tool_lines_of_that_beam(checkpoints):
    checkpoint = checkpoints("translate")
    with serve(checkpoint) as client:
        assert client.get("/health").json()["beam"] == 1  # the checkpoint's search.beam (FAST)
        for beam in (1, 3):
            answer = client.post("/translate", json={"text": INPUTS["translate"], "beam": beam})
            assert answer.json()["translations"] == translate_tool(
                checkpoint, INPUTS["translate"], "--beam", str(beam))


@pytest.mark.slow
def test_analyze_gives_pieces_and_an_attention_row_per_output_piece(checkpoints):
    with serve(checkpoints("translate")) as client:
        analyses = client.post("/analyze", json={"text": ["you want seven apples", " "],
                                                 "beam": 2}).json()["analyses"]
    first = analyses[0]
    assert first["source_pieces"][-1] == first["target_pieces"][-1] == "</s>"
    assert len(first["attention"]) == len(first["target_pieces"])
    for row in first["attention"]:
        assert len(row) == len(first["source_pieces"])
        assert sum(row) == pytest.approx(1.0, abs=1e-2)  # a distribution over the source
    assert analyses[1] == {"output": ""}  # a blank line: nothing translated


@pytest.mark.slow
def test_concurrent_requests_are_answered_correctly_in_fewer_batches(checkpoints):
    checkpoint = checkpoints("translate")
    lines = INPUTS["translate"] * 4
    expected = translate_tool(checkpoint, lines, "--beam", "2")
    # A long wait gathers every request that arrives while the first one waits.
    with serve(checkpoint, wait_ms=400) as client:
        def ask(i: int) -> list[str]:
            answer = client.post("/translate", json={"text": [lines[i], lines[i + 1]], "beam": 2})
            assert answer.status_code == 200, answer.text
            return answer.json()["translations"]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(16)))
        health = client.get("/health").json()
    assert answers == [expected[i : i + 2] for i in range(16)]
    assert health["requests"] == 16 and health["batches"] < 16


# ---- the load-test benchmark: seq2seq-serve in a subprocess, driven by concurrent clients ----

def test_latency_percentiles_are_nearest_rank():
    from benchmarks.serve_load import percentile
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile(values[::-1], 100) == 100.0 and percentile([7.0], 99) == 7.0


@pytest.mark.slow
def test_load_benchmark_serves_every_request_of_every_level(checkpoints, tmp_path):
    from benchmarks.serve_load import main as load_main
    src = tmp_path / "src.en"
    src.write_text("you want seven apples\n\nthey paint five small lamps\ni see nine cars\n")
    out = tmp_path / "load.json"
    assert load_main(["--checkpoint", str(checkpoints("translate")), "--src", str(src),
                      "--clients", "1", "4", "--seconds", "1", "--warmup", "1",
                      "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [level["clients"] for level in result["levels"]] == [1, 4]
    for level in result["levels"]:
        assert level["errors"] == 0 and level["requests"] > 0 and level["lines"] == level["requests"]
        assert level["latency_p99_ms"] >= level["latency_p50_ms"] > 0
        assert level["server_peak_rss_mib"] > 0 and level["server_batches"] >= 1
    assert result["topology"] == "translate" and result["beam"] == 1
