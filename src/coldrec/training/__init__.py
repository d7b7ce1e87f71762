"""Training: the model protocols, the one epoch loop every trained model plugs into,
saved models, and the run plumbing (settings, seeding, run folders) of every command."""

from __future__ import annotations
