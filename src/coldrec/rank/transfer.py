"""KNN residual transfer with a similarity gate ("Geometric Residual Transfer with
Similarity Gating", building on "Let It Go").

With delta item vectors (``e_i = map(c_i) + Δ_i``) a cold item's residual ``Δ_c`` is
zero (never trained) or noisy (a handful of interactions). After training, with no new
parameters, each cold item ``c`` takes the residuals of its nearest warm items in
content space:

- the top ``k`` warm neighbours ``w`` by cosine of the content vectors (FAISS, exact
  inner product on L2-normalised vectors, batched), similarities ``s_w``;
- weights ``α_w = softmax(s_w / T)``; ``Δ_knn = Σ α_w·Δ_w``;
- ``m = max s_w``; gate ``g = clip(σ(β(m − τ)), 0, 1)``, and ``g = 0`` when ``m < m_hard``;
- ``Δ_c ← g·Δ_knn + (1 − g)·Δ_c``. Warm items are unchanged.

Defaults are the paper's: ``T = 0.07``, ``τ = 0.25``, ``β = 20``, ``m_hard = 0.05``,
``k = 10`` (it also reports 25, 50, 100).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Transfer", "TransferConfig", "gate_value", "knn_gate_transfer", "lenders"]


class TransferConfig(BaseModel):
    """KNN + gate settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(10, gt=0)
    """Warm neighbours per cold item."""
    temperature: float = Field(0.07, gt=0)
    """T of the neighbour weights ``softmax(cos / T)``."""
    tau: float = 0.25
    """Similarity at which the gate is half open."""
    beta: float = Field(20.0, gt=0)
    """Steepness of the gate."""
    m_hard: float = 0.05
    """Below this best similarity the gate is shut."""
    batch_size: int = Field(4096, gt=0)
    """Cold items searched at once."""


@dataclass(frozen=True)
class Transfer:
    """New residuals for every item, and per cold item its gate and best similarity."""

    residuals: np.ndarray
    cold_items: np.ndarray
    gates: np.ndarray
    max_similarity: np.ndarray

    def summary(self) -> dict[str, float]:
        """Cold items, mean gate, share of shut gates, mean best similarity."""
        if len(self.gates) == 0:
            return {"cold_items": 0}
        return {
            "cold_items": len(self.gates),
            "mean_gate": float(self.gates.mean()),
            "shut": float((self.gates == 0).mean()),
            "mean_max_similarity": float(self.max_similarity.mean()),
        }


def knn_gate_transfer(
    residuals: np.ndarray,
    content: np.ndarray,
    cold: np.ndarray,
    warm: np.ndarray,
    config: TransferConfig | None = None,
) -> Transfer:
    """Move residuals from ``warm`` items (bool mask: the donors, items with trained
    residuals) to ``cold`` items (bool mask) by the rule of the module doc.

    ``residuals`` (items × d) and ``content`` (items × d_content, L2-normalised rows) are
    indexed by item id; the result is a new array, the inputs are not changed.
    """
    config = config or TransferConfig()
    if (cold & warm).any():
        raise ValueError("an item cannot be both a donor and a receiver")
    donors, receivers = np.flatnonzero(warm), np.flatnonzero(cold)
    out = residuals.copy()
    if len(donors) == 0 or len(receivers) == 0:
        empty = np.zeros(0, dtype=np.float32)
        return Transfer(out, receivers, empty, empty)
    index = faiss.IndexFlatIP(content.shape[1])
    index.add(np.ascontiguousarray(content[donors], dtype=np.float32))
    k = min(config.k, len(donors))
    gates, best = [], []
    for start in range(0, len(receivers), config.batch_size):
        batch = receivers[start : start + config.batch_size]
        queries = np.ascontiguousarray(content[batch], dtype=np.float32)
        similarity, neighbour = index.search(queries, k)
        weights = _softmax(similarity / config.temperature)
        knn = np.einsum("ck,ckd->cd", weights, residuals[donors[neighbour]])
        m = similarity.max(axis=1)
        gate = gate_value(m, config)
        out[batch] = gate[:, None] * knn + (1 - gate[:, None]) * residuals[batch]
        gates.append(gate)
        best.append(m)
    return Transfer(out, receivers, np.concatenate(gates), np.concatenate(best))


def lenders(
    query: np.ndarray, content: np.ndarray, warm: np.ndarray, config: TransferConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The warm items whose residuals one content vector ``query`` takes by the rule of
    the module doc: their ids, similarities and weights ``α_w``, best first, and the gate."""
    donors = np.flatnonzero(warm)
    similarity = content[donors] @ query
    best = np.argsort(-similarity, kind="stable")[: config.k]
    weights = _softmax(similarity[best][None] / config.temperature)[0]
    gate = float(gate_value(similarity[best[:1]], config)[0]) if len(best) else 0.0
    return donors[best], similarity[best], weights, gate


def gate_value(max_similarity: np.ndarray, config: TransferConfig) -> np.ndarray:
    """``clip(σ(β(m − τ)), 0, 1)``, zero where ``m < m_hard``."""
    z = config.beta * (max_similarity.astype(np.float64) - config.tau)
    gate = np.clip(1.0 / (1.0 + np.exp(-z)), 0.0, 1.0)
    return np.where(max_similarity < config.m_hard, 0.0, gate).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
