"""Grader training dynamics: the weight average that is scored and kept, batch-norm momentum."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="training extra (torch) not installed")

from inspection.grading.model_card import Preprocessing  # noqa: E402
from training.grader import _BestEpoch  # noqa: E402


def _model() -> Any:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    return model


def _keeper(model: Any, *, ema_decay: float) -> _BestEpoch:
    spec = Preprocessing(size=32, mode="squash")
    return _BestEpoch(model=model, photos=[], spec=spec, ema_decay=ema_decay)


def test_average_ramps_up_then_follows_the_live_weights_slowly() -> None:
    model = _model()
    keeper = _keeper(model, ema_decay=0.9)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].num_batches_tracked.fill_(7)
    keeper.step(model)
    # first step: decay ramps to min(0.9, 2/11), so the average moves most of the way
    expected = 1.0 + (3.0 - 1.0) * (1 - 2 / 11)
    assert keeper.ema is not None
    assert torch.allclose(keeper.ema.state_dict()["0.weight"], torch.full((2, 2), expected))
    assert (
        int(keeper.ema.state_dict()["1.num_batches_tracked"]) == 7
    )  # counters are copied, not averaged

    for _ in range(200):
        keeper.step(model)
    with torch.no_grad():
        model[0].weight.fill_(13.0)
    keeper.step(model)
    # late steps: the full decay, one step moves the average a tenth of the way
    assert torch.allclose(keeper.ema.state_dict()["0.weight"], torch.full((2, 2), 4.0), atol=1e-4)

    keeper.restore(model)
    # no validation photos: training returns the final average, not the live weights
    assert torch.allclose(model[0].weight, torch.full((2, 2), 4.0), atol=1e-4)


def test_without_average_the_live_weights_are_kept() -> None:
    model = _model()
    keeper = _keeper(model, ema_decay=0.0)
    with torch.no_grad():
        model[0].weight.fill_(5.0)
    keeper.step(model)
    keeper.restore(model)
    assert keeper.ema is None
    assert torch.allclose(model[0].weight, torch.full((2, 2), 5.0))


def test_batch_norm_statistics_follow_fine_tuning() -> None:
    """The TF port's momentum 0.01 left the running statistics hundreds of steps behind the
    weights; fine-tuning on a few hundred photos needs PyTorch's 0.1."""
    from training.grader import BN_MOMENTUM, GraderNet

    model = GraderNet(size=32, pretrained=False)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {BN_MOMENTUM} == {0.1}
