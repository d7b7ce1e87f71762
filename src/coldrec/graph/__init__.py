"""Graph rankers over the user–item interaction graph: LightGCN and XSimGCL (the
backbones of LAGCL4Rec), trained with BPR (and XSimGCL's contrastive loss)."""

from __future__ import annotations

from coldrec.graph.lightgcn import GraphRecommender, LightGCNConfig, XSimGCLConfig

__all__ = ["GraphRecommender", "LightGCNConfig", "XSimGCLConfig"]
