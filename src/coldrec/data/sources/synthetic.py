"""A deterministic synthetic data set shaped like Amazon Beauty 2014 5-core.

The default data of the demo and of most tests. Items hang under a hand-written Beauty
category tree (3 or 4 levels from the root ``"Beauty"``); a title is built from the
item's brand, words of its leaf and shared noise modifiers, so text carries the
category. Users have 2 to 3 favourite leaves (one of them replaced at a random point of
their history), at least ``min_interactions`` interactions in an active period of the
timeline, and buy mostly from their current favourites. A share of the items is
released during the timeline and favoured while new, so a global temporal split leaves
strict cold items (in test, never in train) that carry a fair part of the test
interactions.

Everything comes from one ``numpy.random.default_rng(seed)``: the same parameters give
the same frames.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from coldrec.data.frames import Frames, make_interactions, make_items
from coldrec.data.sources._base import SourceBase

__all__ = ["CATEGORY_ROOT", "SyntheticSource"]

CATEGORY_ROOT = "Beauty"

# One leaf per row: path below the root, product nouns, descriptive words.
_TREE = (
    ("Makeup > Lips > Lipstick", "Lipstick, Lip Color, Lip Crayon",
     "Matte, Satin, Creamy, Velvet, Long-Wear, Bold, Sheer"),
    ("Makeup > Lips > Lip Glosses", "Lip Gloss, Lip Shine, Lip Lacquer",
     "Glossy, Shimmer, Plumping, High-Shine, Non-Sticky, Sparkle"),
    ("Makeup > Eyes > Mascara", "Mascara, Lash Mascara, Lash Primer",
     "Volumizing, Lengthening, Waterproof, Curling, Smudge-Proof, Thickening"),
    ("Makeup > Eyes > Eyeliner", "Eyeliner, Eye Pencil, Liquid Liner, Kohl Liner",
     "Precision, Felt-Tip, Gel, Intense, Smudge-Proof, Retractable"),
    ("Makeup > Eyes > Eye Shadow", "Eyeshadow, Eye Shadow Palette, Shadow Quad",
     "Shimmer, Smoky, Metallic, Neutral, Pigmented, Nude"),
    ("Makeup > Face > Foundation", "Foundation, Liquid Foundation, Tinted Moisturizer",
     "Full Coverage, Flawless, Oil-Free, Buildable, Natural Finish, Dewy"),
    ("Makeup > Face > Concealers & Neutralizers", "Concealer, Color Corrector, Concealer Stick",
     "Creamy, Brightening, Under-Eye, Crease-Proof, Camouflage, Full Coverage"),
    ("Makeup > Face > Powder", "Pressed Powder, Setting Powder, Loose Powder, Powder Compact",
     "Translucent, Mattifying, Finishing, Oil-Control, Silky"),
    ("Makeup > Face > Blush", "Blush, Cheek Color, Blusher",
     "Rosy, Flush, Radiant, Baked, Cream-to-Powder"),
    ("Makeup > Face > Bronzers & Highlighters", "Bronzer, Highlighter, Illuminator",
     "Sun-Kissed, Glow, Luminous, Contour, Strobing"),
    ("Makeup > Nails > Nail Polish", "Nail Polish, Nail Lacquer, Nail Enamel, Nail Color",
     "Quick-Dry, Chip-Resistant, Glitter, Creme, Gel-Effect, Neon"),
    ("Makeup > Nails > Top & Base Coats", "Top Coat, Base Coat, Ridge Filler",
     "High-Gloss, Strengthening, Fast-Drying, Clear, Anti-Chip"),
    ("Makeup > Makeup Remover", "Makeup Remover, Cleansing Wipes, Micellar Water",
     "Gentle, Oil-Free, Waterproof Makeup, Eye and Lip, Biphase"),
    ("Makeup > Makeup Sets", "Makeup Kit, Makeup Set, Gift Set, Palette Set",
     "All-in-One, Holiday, Complete, Starter, Collection"),
    ("Skin Care > Face > Cleansers", "Facial Cleanser, Face Wash, Cleansing Gel",
     "Deep Pore, Purifying, Foaming, Exfoliating, Acne, Clarifying"),
    ("Skin Care > Face > Creams & Moisturizers", "Face Cream, Moisturizer, Day Cream, Night Cream",
     "Anti-Aging, Firming, Nourishing, Retinol, Hyaluronic, Wrinkle"),
    ("Skin Care > Face > Treatments & Masks", "Face Mask, Clay Mask, Sheet Mask, Peel",
     "Detox, Charcoal, Pore Minimizing, Bentonite, Purifying, Glycolic"),
    ("Skin Care > Face > Oils & Serums", "Serum, Face Oil, Facial Essence",
     "Vitamin C, Hyaluronic Acid, Argan, Rosehip, Antioxidant, Repairing"),
    ("Skin Care > Face > Toners & Astringents", "Toner, Astringent, Facial Mist",
     "Witch Hazel, Alcohol-Free, Balancing, Refreshing, Rose Water"),
    ("Skin Care > Eyes > Creams", "Eye Cream, Eye Gel, Eye Balm",
     "Puffiness, Dark Circle, Firming, Cooling, Peptide, Caffeine"),
    ("Skin Care > Body > Lotions", "Body Lotion, Body Milk, Lotion",
     "Daily, Shea, Cocoa Butter, Non-Greasy, Dry Skin"),
    ("Skin Care > Body > Body Butter", "Body Butter, Body Cream, Whipped Butter",
     "Rich, Shea Butter, Mango, Intense Moisture, Coconut"),
    ("Skin Care > Sun > Skin Protection", "Sunscreen, Sun Block, Sunscreen Lotion",
     "SPF 30, SPF 50, Broad Spectrum, Water Resistant, Sport, Mineral"),
    ("Skin Care > Sun > Self-Tanners & Bronzers", "Self Tanner, Tanning Lotion, Bronzing Mousse",
     "Sunless, Streak-Free, Gradual, Golden, Instant Tan"),
    ("Skin Care > Hands & Nails > Hand Creams & Lotions", "Hand Cream, Hand Lotion, Cuticle Cream",
     "Intensive, Repairing, Softening, Cracked Skin, Glycerin"),
    ("Hair Care > Shampoos", "Shampoo, Dry Shampoo, Clarifying Shampoo",
     "Volumizing, Anti-Dandruff, Color Safe, Sulfate-Free, Daily, Tea Tree"),
    ("Hair Care > Conditioners", "Conditioner, Leave-In Conditioner, Deep Conditioner",
     "Detangling, Smoothing, Repair, Frizz Control, Silky"),
    ("Hair Care > Hair & Scalp Treatments", "Hair Mask, Scalp Treatment, Hair Oil",
     "Keratin, Argan Oil, Strengthening, Deep Repair, Split End, Biotin"),
    ("Hair Care > Styling Products > Hair Sprays", "Hair Spray, Hairspray, Finishing Spray",
     "Strong Hold, Flexible Hold, Humidity-Resistant, Shine, Volume"),
    ("Hair Care > Styling Products > Creams, Gels & Lotions", "Styling Gel, Pomade, Hair Wax",
     "Firm Hold, Sculpting, Texture, Defining, Curl"),
    ("Hair Care > Styling Tools > Flat Irons", "Flat Iron, Hair Straightener, Straightening Iron",
     "Ceramic, Tourmaline, Titanium, Ionic, Dual Voltage, 1 Inch"),
    ("Hair Care > Styling Tools > Hair Dryers", "Hair Dryer, Blow Dryer, Travel Dryer",
     "Ionic, Ceramic, Quiet, 1875 Watt, Diffuser"),
    ("Hair Care > Styling Tools > Brushes", "Hair Brush, Paddle Brush, Round Brush",
     "Boar Bristle, Vented, Cushion, Thermal, Detangling"),
    ("Hair Care > Hair Color > Hair Dyes", "Hair Color, Hair Dye, Root Touch-Up",
     "Permanent, Semi-Permanent, Ammonia-Free, Gray Coverage, Ash Blonde, Dark Brown"),
    ("Fragrance > Women's > Eau de Parfum", "Eau de Parfum, Perfume, Parfum Spray",
     "Floral, Oriental, Fruity, Jasmine, Vanilla, Rose"),
    ("Fragrance > Women's > Eau de Toilette", "Eau de Toilette, EDT Spray, Fragrance Mist",
     "Fresh, Citrus, Peony, Gardenia, Light Floral"),
    ("Fragrance > Men's > Eau de Toilette", "Cologne, Eau de Toilette for Men, Aftershave",
     "Woody, Aquatic, Spicy, Musk, Sandalwood, Leather"),
    ("Bath & Body > Cleansers > Soaps", "Bar Soap, Soap, Castile Soap",
     "Handmade, Goat Milk, Oatmeal, Glycerin, Lavender"),
    ("Bath & Body > Cleansers > Body Washes", "Body Wash, Shower Gel, Shower Cream",
     "Foaming, Refreshing, Creamy, Eucalyptus, Citrus"),
    ("Bath & Body > Scrubs & Body Treatments > Body Scrubs", "Body Scrub, Sugar Scrub, Salt Scrub",
     "Exfoliating, Coffee, Coconut, Smoothing, Polishing"),
    ("Bath & Body > Bath > Minerals & Salts", "Bath Salts, Epsom Salt, Bath Soak, Bath Bomb",
     "Dead Sea, Relaxing, Mineral, Detox, Soothing"),
    ("Bath & Body > Bathing Accessories > Loofahs, Sponges & Poufs",
     "Loofah, Bath Sponge, Shower Pouf, Exfoliating Gloves", "Natural, Mesh, Konjac, Soft"),
    ("Tools & Accessories > Makeup Brushes & Tools > Brushes & Applicators",
     "Makeup Brush Set, Foundation Brush, Kabuki Brush, Blending Sponge",
     "Synthetic Bristle, Dense, Blending, Contour, Flat Top"),
    ("Tools & Accessories > Makeup Brushes & Tools > Fake Eyelashes & Adhesives",
     "False Eyelashes, Lash Adhesive, Strip Lashes", "Wispy, Dramatic, Reusable, Mink, 3D"),
    ("Tools & Accessories > Nail Tools > Nail Art Equipment",
     "Nail Art Kit, Nail Stamping Plate, Nail Stickers, Dotting Tools",
     "Rhinestone, Decals, DIY, Stamping, Striping"),
    ("Tools & Accessories > Nail Tools > Nail Files & Buffers",
     "Nail File, Nail Buffer, Emery Board", "Crystal, Double-Sided, Glass, Shine, Grit"),
    ("Tools & Accessories > Mirrors", "Makeup Mirror, Vanity Mirror, Compact Mirror",
     "Lighted, LED, Magnifying, 10x, Tabletop"),
)  # fmt: skip

# Top category: price scale (dollars, median) and words brands of that aisle end with.
_TOPS = {
    "Makeup": (11.0, ("Cosmetics", "Beauty", "Color")),
    "Skin Care": (19.0, ("Skin", "Labs", "Skincare")),
    "Hair Care": (14.0, ("Professional", "Salon", "Hair")),
    "Fragrance": (42.0, ("Parfums", "Paris", "Fragrances")),
    "Bath & Body": (9.0, ("Naturals", "Bath Co.", "Botanicals")),
    "Tools & Accessories": (13.0, ("Tools", "Pro", "Studio")),
}

_SYLLABLES = (
    "Lu", "Ve", "Ara", "Bel", "Cor", "Da", "Eli", "Flo", "Gla", "Iso", "Ka", "Le", "Mi",
    "No", "Ora", "Pa", "Ri", "Sa", "Te", "Vi", "Zo", "Aur", "Cal", "Ma", "Sel", "Tri",
)  # fmt: skip
_ENDINGS = ("na", "ra", "lia", "ve", "lle", "ssa", "ne", "ria", "ton", "lux", "mi", "ra", "x")
_MODIFIERS = (
    "Hydrating", "Travel Size", "Organic", "Natural", "Paraben Free", "Vegan", "Cruelty-Free",
    "Professional", "Long Lasting", "Fragrance-Free", "Sensitive Skin", "Lightweight",
    "Ultra", "Deluxe", "Classic", "Hypoallergenic", "Salon Formula", "Limited Edition",
)  # fmt: skip
_COLOURS = (
    "Black", "Nude", "Ruby Red", "Pink", "Coral", "Brown", "Plum", "Berry", "Gold", "Silver",
    "Ivory", "Beige",
)  # fmt: skip
_SIZES = (
    "0.5 oz", "1 oz", "1.7 oz", "3.4 oz", "8 fl oz", "12 oz", "16.9 fl oz", "2 Count",
    "Pack of 3", "100 ml",
)  # fmt: skip
_DESCRIPTIONS = (
    "{D1} {noun} for everyday use, {d2} and {m}.",
    "This {d1} {noun} is {d2} and easy to use.",
    "Our {noun}: {d1} formula, {d2} feel, {m}.",
    "{D1} and {d2} {noun} from {brand}, {m}.",
)

_BIN_DAYS = 7
"""Item choice is drawn per week: an item can be bought from the first week after release."""
_SAME_TOP_AFFINITY = 10.0
"""How much more likely a user's favourite leaves share its preferred top category."""
_POP_FLOOR = 0.5
"""Least base popularity: keeps old items from going unbought for years, as in a 5-core."""
_POP_SIGMA = 1.2
"""Spread of the lognormal part of the base popularity (a few best sellers)."""
_ACTIVITY_TAIL = 2.2
"""Tail index of the number of interactions per user (smaller is heavier)."""
_RATING_PROBS = (0.05, 0.05, 0.10, 0.30, 0.50)
_DAY = 86_400


@dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]
    top: int
    nouns: tuple[str, ...]
    words: tuple[str, ...]


def _split(text: str, sep: str = ",") -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(sep))


_TOP_NAMES = tuple(_TOPS)
_LEAVES = tuple(
    _Leaf(
        path=(CATEGORY_ROOT, *_split(path, ">")),
        top=_TOP_NAMES.index(_split(path, ">")[0]),
        nouns=_split(nouns),
        words=_split(words),
    )
    for path, nouns, words in _TREE
)
_LEAF_TOP = np.array([leaf.top for leaf in _LEAVES])


_BYTES_PER_ROW = 1024


def _physical_memory() -> float:
    """Bytes of memory of this machine (infinite where the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


class SyntheticSource(SourceBase):
    """Seeded synthetic Beauty-like interactions and item metadata (no files)."""

    kind: Literal["synthetic"] = "synthetic"
    seed: int = Field(0, ge=0)
    """Seed of the one random generator; the same parameters and seed give the same data."""
    n_users: int = Field(2000, ge=10)
    """Number of users; each has at least ``min_interactions`` interactions."""
    n_items: int = Field(1200, ge=100)
    """Number of items in the catalogue (a few late releases may never be bought)."""
    mean_interactions: float = Field(9.0, gt=5.0, le=100.0)
    """Mean number of interactions per user (heavy-tailed; Amazon Beauty 5-core: 8.9)."""
    min_interactions: int = Field(5, ge=1, le=50)
    """Fewest interactions of a user, as in a 5-core."""
    new_item_share: float = Field(0.2, ge=0.0, le=0.9)
    """Share of items released uniformly during the timeline; the rest exist from the start."""
    new_item_boost: float = Field(20.0, ge=0.0)
    """Extra popularity of a just-released item, as a multiple of its base popularity."""
    new_item_days: float = Field(150.0, gt=0.0)
    """Decay time (days) of the new-item boost."""
    favourite_prob: float = Field(0.8, ge=0.0, le=1.0)
    """Probability that an interaction is in a current favourite leaf (else any leaf)."""
    min_favourites: int = Field(2, ge=1, le=10)
    """Fewest favourite leaves of a user."""
    max_favourites: int = Field(3, ge=1, le=10)
    """Most favourite leaves of a user."""
    drift_prob: float = Field(1.0, ge=0.0, le=1.0)
    """Share of users one of whose favourite leaves is replaced at a random point."""
    description_share: float = Field(0.6, ge=0.0, le=1.0)
    """Share of items with a one-sentence description (the others have none)."""
    modifier_prob: float = Field(0.5, ge=0.0, le=1.0)
    """Probability that a title carries a shared modifier ("Organic", "Travel Size"), noise."""
    start: date = date(2010, 1, 1)
    """First day of the timeline."""
    end: date = date(2014, 7, 1)
    """Day after the last day of the timeline."""

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.min_favourites > self.max_favourites:
            raise ValueError(
                f"min_favourites must be <= max_favourites, got "
                f"{self.min_favourites} > {self.max_favourites}"
            )
        if self.mean_interactions <= self.min_interactions:
            raise ValueError(
                f"mean_interactions must exceed min_interactions ({self.min_interactions}), "
                f"got {self.mean_interactions}"
            )
        if self.min_interactions > self._initial_items():
            raise ValueError(
                f"min_interactions must be <= the {self._initial_items()} items present "
                f"from the start (n_items, new_item_share), got {self.min_interactions}"
            )
        if (self.end - self.start).days < 8 * _BIN_DAYS:
            raise ValueError(
                f"the timeline must span at least 8 weeks, got {self.start}..{self.end}"
            )
        needed, memory = self.bytes_needed(), _physical_memory()
        if needed > memory / 2:
            raise ValueError(
                f"{self.n_users:,} users and {self.n_items:,} items need about "
                f"{needed / 2**30:,.1f} GiB to generate and prepare; this machine has "
                f"{memory / 2**30:,.1f} GiB: lower n_users or n_items"
            )
        return self

    def bytes_needed(self) -> float:
        """A rough upper estimate of the memory generating and preparing these data takes:
        1 KB per interaction and per item (measured: about 0.46 KB at the peak of
        ``prepare`` for 100,000 users and 20,000 items)."""
        return _BYTES_PER_ROW * (self.n_users * self.mean_interactions + self.n_items)

    def _initial_items(self) -> int:
        """Number of items present from the start (every leaf keeps at least one)."""
        return self.n_items - _new_item_count(self.n_items, self.new_item_share)

    def load(self) -> Frames:
        """Generate the catalogue, the users and their interactions from ``seed``."""
        rng = np.random.default_rng(self.seed)
        n_days = (self.end - self.start).days
        catalogue = _make_catalogue(rng, self, n_days)
        users = _make_users(rng, self, catalogue, n_days)
        events = _make_events(rng, users)
        sampler = _ItemSampler(catalogue, self, n_days)
        items = _choose_items(rng, self, users, events, catalogue, sampler)
        ratings = rng.choice(np.arange(1.0, 6.0), size=len(items), p=_RATING_PROBS)
        origin = int(
            datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
        )
        user_ids = _ids("U", self.n_users)
        item_ids = _ids("I", self.n_items)
        interactions = make_interactions(
            user_ids[events.user].tolist(),
            item_ids[items].tolist(),
            (origin + events.day * _DAY).tolist(),
            ratings.tolist(),
        )
        return Frames(
            interactions=interactions,
            items=make_items(_item_records(rng, self, catalogue, item_ids)),
            source=self.kind,
        )


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(5, len(str(n - 1)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


# ---------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class _Catalogue:
    leaf: np.ndarray
    """Leaf index of each item."""
    release: np.ndarray
    """Day (from the timeline start) from which each item exists; 0 for most."""
    popularity: np.ndarray
    """Base popularity of each item (a floor plus a lognormal)."""
    leaf_weight: np.ndarray
    """How often each leaf is chosen: its number of items."""


def _make_catalogue(rng: np.random.Generator, cfg: SyntheticSource, n_days: int) -> _Catalogue:
    n_leaves = len(_LEAVES)
    # Zipf-like leaf sizes, with at least one item per leaf.
    zipf = 1.0 / np.arange(1, n_leaves + 1) ** 0.9
    shares = rng.permutation(zipf / zipf.sum())
    sizes = 1 + rng.multinomial(cfg.n_items - n_leaves, shares)
    leaf = rng.permutation(np.repeat(np.arange(n_leaves), sizes))
    # The first item of every leaf exists from the start, so no leaf is ever empty.
    first = np.zeros(cfg.n_items, dtype=bool)
    first[np.unique(leaf, return_index=True)[1]] = True
    candidates = np.flatnonzero(~first)
    n_new = _new_item_count(cfg.n_items, cfg.new_item_share)
    new = rng.choice(candidates, size=n_new, replace=False)
    release = np.zeros(cfg.n_items, dtype=np.int64)
    release[new] = rng.integers(1, n_days, size=n_new)
    popularity = _POP_FLOOR + rng.lognormal(0.0, _POP_SIGMA, size=cfg.n_items)
    return _Catalogue(leaf, release, popularity, sizes.astype(float))


def _new_item_count(n_items: int, share: float) -> int:
    return min(n_items - len(_LEAVES), round(share * n_items))


def _brand_pools(rng: np.random.Generator, n_items: int) -> list[list[str]]:
    """Made-up brand names per top category, from syllables and an aisle word."""
    per_top = max(6, n_items // 40)
    seen: set[str] = set()
    pools: list[list[str]] = []
    for _, endings in _TOPS.values():
        pool: list[str] = []
        while len(pool) < per_top:
            n_syl = rng.integers(1, 3)
            stem = "".join(rng.choice(_SYLLABLES, size=n_syl)) + rng.choice(_ENDINGS)
            name = stem.capitalize()
            if rng.random() < 0.4:
                name = f"{name} {rng.choice(endings)}"
            if name not in seen:
                seen.add(name)
                pool.append(name)
        pools.append(pool)
    return pools


def _item_records(
    rng: np.random.Generator, cfg: SyntheticSource, cat: _Catalogue, item_ids: np.ndarray
) -> list[dict[str, Any]]:
    """The metadata record of every item: brand, title, leaf path, price, description."""
    brands = _brands(rng, cat.leaf)
    leaf_top = _LEAF_TOP[cat.leaf]
    scale = np.array([price for price, _ in _TOPS.values()])[leaf_top]
    prices = np.maximum(1.0, np.round(scale * rng.lognormal(0.0, 0.6, size=len(scale)))) - 0.01
    described = rng.random(len(scale)) < cfg.description_share
    records = []
    for i, leaf_index in enumerate(cat.leaf):
        leaf = _LEAVES[leaf_index]
        noun = leaf.nouns[rng.integers(len(leaf.nouns))]
        words = [str(w) for w in rng.choice(leaf.words, size=2, replace=False)]
        modifier = str(rng.choice(_MODIFIERS))
        description = _description(rng, brands[i], noun, words, modifier) if described[i] else None
        records.append(
            {
                "item": item_ids[i],
                "title": _title(rng, cfg, brands[i], noun, words, modifier),
                "categories": [list(leaf.path)],
                "brand": brands[i],
                "price": float(prices[i]),
                "description": description,
            }
        )
    return records


def _brands(rng: np.random.Generator, leaf: np.ndarray) -> list[str]:
    """A brand per item from its top category's pool; a few brands sell most items."""
    pools = _brand_pools(rng, len(leaf))
    leaf_top = _LEAF_TOP[leaf]
    brands = np.empty(len(leaf), dtype=object)
    for top, pool in enumerate(pools):
        mine = np.flatnonzero(leaf_top == top)
        choice = _draw(rng, 1.0 / np.arange(1, len(pool) + 1), len(mine))
        brands[mine] = np.array(pool, dtype=object)[choice]
    return brands.tolist()


def _title(
    rng: np.random.Generator,
    cfg: SyntheticSource,
    brand: str,
    noun: str,
    words: list[str],
    modifier: str,
) -> str:
    """An Amazon-like title: brand, maybe a modifier, leaf words, noun, maybe size/colour."""
    described = words[: rng.integers(1, 3)]
    head = [brand]
    if rng.random() < cfg.modifier_prob:
        head.append(modifier)
    if rng.random() < 0.3:
        title = " ".join([*head, noun]) + " - " + ", ".join(described)
    else:
        title = " ".join([*head, *described, noun])
    tail = rng.random()
    if tail < 0.45:
        title += f", {rng.choice(_SIZES)}"
    elif tail < 0.6:
        title += f", {rng.choice(_COLOURS)}"
    return title


def _description(
    rng: np.random.Generator, brand: str, noun: str, words: list[str], modifier: str
) -> str:
    """One sentence from a template, the leaf words and the modifier."""
    template = _DESCRIPTIONS[rng.integers(len(_DESCRIPTIONS))]
    d1, d2, noun, modifier = (_lower(w) for w in (*words, noun, modifier))
    return template.format(
        D1=d1[0].upper() + d1[1:], d1=d1, d2=d2, noun=noun, m=modifier, brand=brand
    )


def _lower(text: str) -> str:
    """Lower case inside a sentence, keeping acronyms ("SPF 30", "LED")."""
    return " ".join(w if w.isupper() else w.lower() for w in text.split())


# ---------------------------------------------------------------- users and events


@dataclass(frozen=True)
class _Users:
    count: np.ndarray
    """Number of interactions of each user."""
    begin: np.ndarray
    """First day of each user's active period."""
    span: np.ndarray
    """Length (days) of each user's active period."""
    leaves: np.ndarray
    """Per user, ``max_favourites + 1`` distinct leaves in preference order."""
    n_fav: np.ndarray
    """Number of favourites; ``leaves[u, n_fav[u]]`` is the leaf drifted to."""
    drift_at: np.ndarray
    """Position in the user's history from which one favourite is replaced (count if never)."""
    replaced: np.ndarray
    """Which favourite slot is replaced."""


def _make_users(
    rng: np.random.Generator, cfg: SyntheticSource, cat: _Catalogue, n_days: int
) -> _Users:
    n = cfg.n_users
    # Heavy tail above the minimum (Lomax, mode at the minimum as in Amazon 5-core); the
    # floor takes about 0.5 off the mean, hence the + 0.5.
    scale = (cfg.mean_interactions - cfg.min_interactions + 0.5) * (_ACTIVITY_TAIL - 1.0)
    extra = np.floor(scale * rng.pareto(_ACTIVITY_TAIL, size=n))
    # A user can always find an unused item among those present from the start.
    cap = min(int((cat.release == 0).sum()), round(25 * cfg.mean_interactions))
    count = np.minimum(cfg.min_interactions + extra.astype(np.int64), cap)
    # Active period: about a year at the median, longer for heavier users.
    span = np.exp(rng.normal(math.log(300.0), 0.9, size=n)) * np.sqrt(count / cfg.min_interactions)
    span = np.clip(np.round(span), _BIN_DAYS, n_days - 1).astype(np.int64)
    begin = np.floor(rng.random(n) * (n_days - span)).astype(np.int64)
    leaves = _favourite_leaves(rng, n, cfg.max_favourites + 1, cat.leaf_weight)
    n_fav = rng.integers(cfg.min_favourites, cfg.max_favourites + 1, size=n)
    drifts = rng.random(n) < cfg.drift_prob
    drift_at = np.where(drifts, 1 + np.floor(rng.random(n) * (count - 1)).astype(np.int64), count)
    replaced = np.floor(rng.random(n) * n_fav).astype(np.int64)
    return _Users(count, begin, span, leaves, n_fav, drift_at, replaced)


def _favourite_leaves(
    rng: np.random.Generator, n_users: int, k: int, leaf_weight: np.ndarray
) -> np.ndarray:
    """``k`` distinct leaves per user, drawn without replacement (Gumbel top-k).

    Leaves are weighted by size, and those of the user's preferred top category by
    :data:`_SAME_TOP_AFFINITY` more, so favourites mostly share a top category.
    """
    top_weight = np.bincount(_LEAF_TOP, weights=leaf_weight, minlength=len(_TOPS))
    top = _draw(rng, top_weight, n_users)
    weight = leaf_weight[None, :] * np.where(
        _LEAF_TOP[None, :] == top[:, None], _SAME_TOP_AFFINITY, 1
    )
    keys = np.log(weight) + rng.gumbel(size=weight.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _draw(rng: np.random.Generator, weight: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probability proportional to ``weight``."""
    cum = np.cumsum(weight)
    return np.searchsorted(cum, rng.random(size) * cum[-1], side="right")


@dataclass(frozen=True)
class _Events:
    user: np.ndarray
    day: np.ndarray
    position: np.ndarray
    """Index of the event in its user's history (time order)."""


def _make_events(rng: np.random.Generator, users: _Users) -> _Events:
    """Interaction days, uniform in each user's active period, ordered by user then day."""
    user = np.repeat(np.arange(len(users.count)), users.count)
    day = users.begin[user] + np.floor(rng.random(len(user)) * (users.span[user] + 1))
    day = day.astype(np.int64)
    order = np.lexsort((day, user))
    user, day = user[order], day[order]
    starts = np.cumsum(users.count) - users.count
    position = np.arange(len(user)) - starts[user]
    return _Events(user, day, position)


# ---------------------------------------------------------------- item choice


class _ItemSampler:
    """Draws an item of a leaf in a week, by popularity boosted while new.

    For each leaf a (weeks x leaf items) table holds the normalised cumulative weights of
    the items released by the start of each week, row ``b`` offset by ``b`` and flattened,
    so one ``searchsorted`` over ``b + u`` draws for many events at once.
    """

    def __init__(self, cat: _Catalogue, cfg: SyntheticSource, n_days: int) -> None:
        n_bins = -(-n_days // _BIN_DAYS)
        bin_day = np.arange(n_bins)[:, None] * _BIN_DAYS
        self.members: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []
        for leaf in range(len(_LEAVES)):
            members = np.flatnonzero(cat.leaf == leaf)
            age = bin_day - cat.release[members][None, :]
            boost = 1.0 + cfg.new_item_boost * np.exp(-np.maximum(age, 0) / cfg.new_item_days)
            weight = np.where(age >= 0, cat.popularity[members][None, :] * boost, 0.0)
            cum = np.cumsum(weight, axis=1)
            cum /= cum[:, -1:]
            self.members.append(members)
            self.tables.append((cum + np.arange(n_bins)[:, None]).ravel())

    def sample(self, rng: np.random.Generator, leaf: np.ndarray, day: np.ndarray) -> np.ndarray:
        """One item per (leaf, day) pair, among the items released by that day's week."""
        uniform = rng.random(len(leaf)) * (1.0 - 2.0**-30)  # keeps b + u below b + 1
        row = day // _BIN_DAYS
        items = np.empty(len(leaf), dtype=np.int64)
        for index in np.unique(leaf):
            sel = np.flatnonzero(leaf == index)
            members = self.members[index]
            pos = np.searchsorted(self.tables[index], row[sel] + uniform[sel], side="right")
            items[sel] = members[pos % len(members)]
        return items


def _choose_leaves(
    rng: np.random.Generator,
    cfg: SyntheticSource,
    users: _Users,
    events: _Events,
    cat: _Catalogue,
    idx: np.ndarray,
) -> np.ndarray:
    """The leaf of each event in ``idx``: a current favourite, or any leaf by size."""
    user = events.user[idx]
    slot = np.floor(rng.random(len(idx)) * users.n_fav[user]).astype(np.int64)
    drifted = (events.position[idx] >= users.drift_at[user]) & (slot == users.replaced[user])
    leaf = users.leaves[user, np.where(drifted, users.n_fav[user], slot)]
    explore = rng.random(len(idx)) >= cfg.favourite_prob
    leaf[explore] = _draw(rng, cat.leaf_weight, int(explore.sum()))
    return leaf


def _choose_items(
    rng: np.random.Generator,
    cfg: SyntheticSource,
    users: _Users,
    events: _Events,
    cat: _Catalogue,
    sampler: _ItemSampler,
) -> np.ndarray:
    """An item per event, never the same item twice for one user.

    Repeats are drawn again (leaf and item) a few times; the rare remaining ones take a
    weighted unused item of any leaf released by then.
    """
    n_items = len(cat.leaf)
    idx = np.arange(len(events.user))
    items = np.empty(len(idx), dtype=np.int64)
    for _ in range(12):
        items[idx] = sampler.sample(
            rng, _choose_leaves(rng, cfg, users, events, cat, idx), events.day[idx]
        )
        idx = _repeats(events.user * n_items + items)
        if len(idx) == 0:
            return items
    for i in idx:
        _fallback(rng, events, cat, items, int(i))
    return items


def _repeats(keys: np.ndarray) -> np.ndarray:
    """Indices of keys already seen at a smaller index."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    again = np.zeros(len(keys), dtype=bool)
    again[order[1:]] = sorted_keys[1:] == sorted_keys[:-1]
    return np.flatnonzero(again)


def _fallback(
    rng: np.random.Generator, events: _Events, cat: _Catalogue, items: np.ndarray, i: int
) -> None:
    """Give event ``i`` an item of any leaf, released by its week, that its user lacks."""
    user = events.user[i]
    first = np.searchsorted(events.user, user, side="left")
    last = np.searchsorted(events.user, user, side="right")
    week_start = events.day[i] // _BIN_DAYS * _BIN_DAYS
    weight = np.where(cat.release <= week_start, cat.popularity, 0.0)
    mine = np.delete(items[first:last], i - first)
    weight[mine] = 0.0
    items[i] = _draw(rng, weight, 1)[0]
