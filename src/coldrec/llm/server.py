"""A local OpenAI-compatible server for a GGUF model (``python -m llama_cpp.server``),
for tests, benchmarks and trying the ``openai`` backend without a GPU machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coldrec.errors import LLMError
from coldrec.llm.backends.llamacpp import smollm2_path

__all__ = ["local_server"]


@contextmanager
def local_server(
    model_path: Path | None = None,
    n_ctx: int = 2048,
    log: Path | None = None,
    wait_s: float = 120,
    threads: int | None = None,
) -> Iterator[str]:
    """Serve ``model_path`` (default SmolLM2-135M) on a free port of 127.0.0.1; yields
    the base URL (``http://127.0.0.1:PORT/v1``) once it answers, stops it on exit.
    ``threads``: for generation and prompt processing alike (default llama.cpp's: half
    the cores to generate, all of them for prompts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_path or smollm2_path()),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    if threads is not None:
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    output = log.open("w") if log else subprocess.DEVNULL
    server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait(server, base, wait_s, log)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if log:
            output.close()  # type: ignore[union-attr]


def _wait(server: subprocess.Popen, base: str, wait_s: float, log: Path | None) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise LLMError(f"llama_cpp.server did not start at {base}: {tail}") from None
            time.sleep(0.5)
