"""Grader micro-batching: callers get their own rows back, batches fill, errors reach callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from inspection.errors import ServiceUnavailable
from inspection.grading.batching import GraderBatcher

ROW_SHAPE = (3, 8, 8)


def _rows(*ids: int) -> np.ndarray:
    """Rows whose every value is the row's id, so a caller can tell its rows from others'."""
    return np.stack([np.full(ROW_SHAPE, i, np.float32) for i in ids])


class GatedModel:
    """A batch function that records batch sizes and can hold the first batch until released."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.threads: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> Sequence[np.ndarray]:
        with self._lock:
            self.sizes.append(batch.shape[0])
            self.threads.append(threading.current_thread().name)
        self.started.set()
        assert self.release.wait(10), "test never released the model"
        # Two outputs like the grader (logits, embedding), both derived from the row id.
        ids = batch[:, 0, 0, 0]
        return [np.stack([ids, -ids], axis=1), np.repeat(ids[:, None], 4, axis=1)]


def _wait_queued(batcher: GraderBatcher, n: int) -> None:
    deadline = time.monotonic() + 10
    while batcher._queue.qsize() < n:  # the test steers the worker's timing
        assert time.monotonic() < deadline, "callers never queued"
        time.sleep(0.001)


def test_disabled_runs_in_the_callers_thread() -> None:
    model = GatedModel()
    batcher = GraderBatcher(run_batch=model, max_batch=1)
    logits, embedding = batcher.submit(_rows(7, 9))
    assert not batcher.enabled
    assert logits.tolist() == [[7.0, -7.0], [9.0, -9.0]]
    assert embedding.shape == (2, 4)
    assert model.threads == [threading.current_thread().name]
    assert batcher.stats.batches == 1 and batcher.stats.rows == 2
    batcher.close()


def test_concurrent_callers_share_one_batch_and_get_their_own_rows() -> None:
    model = GatedModel(hold_first=True)
    batcher = GraderBatcher(run_batch=model, max_batch=8, wait_ms=50)
    results: dict[int, list[np.ndarray]] = {}

    def call(i: int) -> None:
        results[i] = batcher.submit(_rows(i))

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert model.started.wait(10)
    # While the first batch runs, eight more callers queue up: they must run as one batch.
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 9)]
    for t in others:
        t.start()
    _wait_queued(batcher, 8)
    model.release.set()
    for t in [first, *others]:
        t.join(10)
    batcher.close()

    assert model.sizes == [1, 8]
    for i in range(9):
        logits, embedding = results[i]
        assert logits.tolist() == [[float(i), float(-i)]]
        assert embedding.tolist() == [[float(i)] * 4]
    assert batcher.stats.batches == 2 and batcher.stats.largest_batch == 8
    assert batcher.stats.mean_batch == pytest.approx(4.5)


def test_a_caller_that_does_not_fit_starts_the_next_batch() -> None:
    model = GatedModel(hold_first=True)
    batcher = GraderBatcher(run_batch=model, max_batch=4, wait_ms=50)
    results: dict[str, list[np.ndarray]] = {}

    def call(key: str, rows: np.ndarray) -> None:
        results[key] = batcher.submit(rows)

    blocker = threading.Thread(target=call, args=("blocker", _rows(100)))
    blocker.start()
    assert model.started.wait(10)
    # 3 rows, then 2 rows (3 + 2 > 4: the second waits), then a 6-row request (runs alone).
    requests = {"three": _rows(1, 2, 3), "two": _rows(4, 5), "six": _rows(*range(10, 16))}
    threads = []
    for key, rows in requests.items():
        threads.append(threading.Thread(target=call, args=(key, rows)))
        threads[-1].start()
        _wait_queued(batcher, len(threads))
    model.release.set()
    for t in [blocker, *threads]:
        t.join(10)
    batcher.close()

    assert model.sizes == [1, 3, 2, 6]
    for key, rows in requests.items():
        assert results[key][0][:, 0].tolist() == rows[:, 0, 0, 0].tolist()


def test_a_failed_batch_reaches_every_caller_in_it_and_the_batcher_goes_on() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> Sequence[np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("onnxruntime ran out of memory")
        return [batch[:, 0, 0, :2]]

    batcher = GraderBatcher(run_batch=flaky, max_batch=4, wait_ms=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.submit(_rows(1))
    (out,) = batcher.submit(_rows(2))
    assert out.tolist() == [[2.0, 2.0]]
    batcher.close()


def test_a_model_returning_the_wrong_row_count_is_an_error_not_a_mixup() -> None:
    batcher = GraderBatcher(run_batch=lambda x: [x[:1]], max_batch=4, wait_ms=1)
    with pytest.raises(RuntimeError, match="returned 1 rows for a batch of 2"):
        batcher.submit(_rows(1, 2))
    batcher.close()


def test_close_finishes_queued_work_and_refuses_new_work() -> None:
    model = GatedModel(hold_first=True)
    batcher = GraderBatcher(run_batch=model, max_batch=2, wait_ms=0)
    results: dict[int, list[np.ndarray]] = {}

    def call(i: int) -> None:
        results[i] = batcher.submit(_rows(i))

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert model.started.wait(10)
    threads += [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    for t in threads[1:]:
        t.start()
    _wait_queued(batcher, 3)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    model.release.set()
    closer.join(10)
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2, 3]
    assert sum(model.sizes) == 4
    with pytest.raises(ServiceUnavailable):
        batcher.submit(_rows(5))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GraderBatcher(run_batch=lambda x: [x], max_batch=0)
    with pytest.raises(ValueError, match="wait_ms"):
        GraderBatcher(run_batch=lambda x: [x], wait_ms=-1)
    batcher = GraderBatcher(run_batch=lambda x: [x], max_batch=1)
    with pytest.raises(ValueError, match="at least one row"):
        batcher.submit(np.zeros((0, *ROW_SHAPE), np.float32))


def _tiny_grader_onnx() -> bytes:
    """A real ONNX classifier (conv -> pool -> linear) with "logits" and "embedding" outputs."""
    rng = np.random.default_rng(0)
    conv_w = helper.make_tensor(
        "conv_w", TensorProto.FLOAT, [4, 3, 3, 3], rng.normal(size=108).astype(np.float32)
    )
    fc_w = helper.make_tensor(
        "fc_w", TensorProto.FLOAT, [4, 3], rng.normal(size=12).astype(np.float32)
    )
    nodes = [
        helper.make_node("Conv", ["images", "conv_w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["feat"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "fc_w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_grader",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4]),
        ],
        initializer=[conv_w, fc_w],
    )
    # IR 10 keeps the file loadable by older onnxruntime builds than the onnx package targets.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_batched_onnx_outputs_equal_one_by_one_outputs() -> None:
    session = ort.InferenceSession(_tiny_grader_onnx(), providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> Sequence[np.ndarray]:
        return session.run(["logits", "embedding"], {"images": batch})

    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(1 + i % 3, *ROW_SHAPE)).astype(np.float32) for i in range(12)]
    expected = [run(x) for x in inputs]
    batcher = GraderBatcher(run_batch=run, max_batch=8, wait_ms=500)
    results: dict[int, list[np.ndarray]] = {}
    barrier = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        barrier.wait()
        results[i] = batcher.submit(inputs[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    batcher.close()
    for i, (logits, embedding) in enumerate(expected):
        np.testing.assert_allclose(results[i][0], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(results[i][1], embedding, rtol=1e-5, atol=1e-5)
    assert batcher.stats.rows == sum(x.shape[0] for x in inputs)
    assert batcher.stats.batches < len(inputs)
