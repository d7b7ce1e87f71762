"""Serving: a finished run behind HTTP (``coldrec serve``). New items are recommendable on
the next request, events count at once, every write is durable.

Import the parts from their modules (``coldrec.serve.engine``, ``coldrec.serve.app``).
"""

from __future__ import annotations
