"""The messages of the LLM stages: pure functions from texts to chat messages.

Every prompt puts what is known about the user inside ``<context>…</context>``: the
recent *history* items (never a test item), their interest leaves and, after Stage 1,
the profile. Choices (categories, subcategories, candidate items) come after the
context, so the embedding judge compares options with the context alone. Item options
are written exactly as the schema's allowed values, so an answer can be projected back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coldrec.llm.base import Messages

__all__ = [
    "SYSTEM",
    "Evidence",
    "Option",
    "UserText",
    "categories_prompt",
    "items_prompt",
    "profile_prompt",
    "rerank_prompt",
    "subcategories_prompt",
]

SYSTEM = (
    "You are a shopping assistant that predicts what a shopper buys next. "
    "Answer with JSON only, choosing only from the options given."
)


@dataclass(frozen=True)
class Evidence:
    """A history item similar to a candidate: its title and the cosine."""

    title: str
    similarity: float


@dataclass(frozen=True)
class Option:
    """A candidate item as the LLM sees it: its label (an allowed value), extra facts
    (``category``, ``brand``) and evidence from the user's history."""

    label: str
    facts: str = ""
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class UserText:
    """What a prompt says about one user."""

    history: Sequence[str]
    """History item texts, oldest first."""
    interests: Sequence[str] = ()
    """Descriptions of the user's interest leaves."""
    profile: str = ""
    keywords: Sequence[str] = ()

    def context(self) -> str:
        lines = ["Recent purchases, oldest first:", *(f"- {text}" for text in self.history)]
        if self.interests:
            lines.append("Recent interests: " + "; ".join(self.interests))
        if self.profile:
            lines.append(f"Shopper profile: {self.profile}")
        if self.keywords:
            lines.append("Keywords: " + ", ".join(self.keywords))
        return "<context>\n" + "\n".join(lines) + "\n</context>"


def _messages(user: UserText, task: str) -> Messages:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{user.context()}\n\n{task}"},
    ]


def _listed(values: Sequence[str]) -> str:
    return "\n".join(f"- {value}" for value in values)


def profile_prompt(user: UserText, categories: Sequence[str]) -> Messages:
    """Stage 1: a short profile, keywords and preferred categories."""
    task = (
        "Describe this shopper: a profile of one or two sentences, up to 5 keywords of "
        "their taste, and up to 3 preferred categories from this list:\n"
        f"{_listed(categories)}\n"
        'Answer as {"profile": "...", "keywords": [...], "preferred_categories": [...]}.'
    )
    return _messages(user, task)


def categories_prompt(user: UserText, categories: Sequence[str], count: int) -> Messages:
    """Stage 2: the categories the next purchase most likely comes from."""
    return _choose(user, "category", "categories", categories, count, order="")


def subcategories_prompt(user: UserText, subcategories: Sequence[str], count: int) -> Messages:
    """Stage 3: the subcategories, within the chosen categories."""
    return _choose(user, "subcategory", "subcategories", subcategories, count, order=", best first")


def _choose(
    user: UserText, noun: str, plural: str, names: Sequence[str], count: int, order: str
) -> Messages:
    task = (
        f"Choose the {count} {plural} this shopper will most likely buy from next{order}:\n"
        f"{_listed(names)}\n"
        f'Answer as {{"items": [...]}} with the {noun} names exactly as written.'
    )
    return _messages(user, task)


def _option_lines(options: Sequence[Option]) -> str:
    lines = []
    for option in options:
        lines.append(f"- {option.label}" + (f" ({option.facts})" if option.facts else ""))
        lines += [
            f'    similar to their purchase "{e.title}" (similarity {e.similarity:.2f})'
            for e in option.evidence
        ]
    return "\n".join(lines)


def _scored_task(count: int) -> str:
    # A labelled scale: with "score": 0-5 in the example SmolLM2 copied 0 for every item.
    return (
        f"Pick up to {count} of these items that this shopper is most likely to buy next, "
        "best first. Give each a score: 5 = very likely, 4 = likely, 3 = maybe, "
        "2 = unlikely, 1 = very unlikely, 0 = no. "
        'Answer as {"ranked": [{"item": "...", "score": 5}, ...]} with the item texts '
        "exactly as written."
    )


def items_prompt(
    user: UserText, subcategory: str, options: Sequence[Option], count: int
) -> Messages:
    """Stage 4: the best items of one subcategory, scored 0–5."""
    task = f"Candidates in {subcategory}:\n{_option_lines(options)}\n\n{_scored_task(count)}"
    return _messages(user, task)


def rerank_prompt(user: UserText, options: Sequence[Option], count: int) -> Messages:
    """Stage 5 (and the flat variant): one global ranking of the given items, with
    variety across categories and brands."""
    task = (
        f"Candidates:\n{_option_lines(options)}\n\n{_scored_task(count)} "
        "Prefer variety: mix categories and do not fill the list with one brand."
    )
    return _messages(user, task)
