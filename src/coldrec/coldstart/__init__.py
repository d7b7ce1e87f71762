"""Item cold-start models of the literature, over a BPR-MF warm backbone (the models the
ColdRec toolkit benchmarks): DeepMusic, DropoutNet, Heater, CLCRec and ALDI, each scoring
warm and cold items in one list, cold items from their text vectors alone."""

from __future__ import annotations

from coldrec.coldstart.aldi import ALDI, ALDIConfig
from coldrec.coldstart.base import ContentModel
from coldrec.coldstart.clcrec import CLCRec, CLCRecConfig
from coldrec.coldstart.deepmusic import DeepMusic, DeepMusicConfig
from coldrec.coldstart.dropoutnet import DropoutNet, DropoutNetConfig
from coldrec.coldstart.heater import Heater, HeaterConfig
from coldrec.coldstart.mf import BPRMF, BPRMFConfig

__all__ = [
    "ALDI",
    "BPRMF",
    "ALDIConfig",
    "BPRMFConfig",
    "CLCRec",
    "CLCRecConfig",
    "ContentModel",
    "DeepMusic",
    "DeepMusicConfig",
    "DropoutNet",
    "DropoutNetConfig",
    "Heater",
    "HeaterConfig",
]
