"""Probability calibration: temperature scaling fitted on validation logits, and its ECE."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(*, logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T minimising validation NLL of softmax(logits / T)."""
    if len(labels) == 0:
        return 1.0
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    # optimise log T so T stays positive
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    # a handful of validation photos can push T to absurd values: keep it sane
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def expected_calibration_error(*, probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: confidence-vs-accuracy gap averaged over equal-width confidence bins."""
    if len(labels) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def reliability_bins(
    *, probs: np.ndarray, labels: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Per-bin confidence, accuracy and count, for the reliability diagram."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        out.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": int(sel.sum()),
                "confidence": float(conf[sel].mean()) if sel.any() else 0.0,
                "accuracy": float(correct[sel].mean()) if sel.any() else 0.0,
            }
        )
    return out
