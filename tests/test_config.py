"""Layered settings: ``--set`` parsing and the key-by-key merge of layers."""

from __future__ import annotations

import pytest

from coldrec.config import merge, parse_overrides
from coldrec.errors import ConfigError


def test_overrides_nest_by_dots_and_parse_values_as_yaml() -> None:
    parsed = parse_overrides(["a.b=1", "a.c=[x, y]", "d=text", "e="])
    assert parsed == {"a": {"b": 1, "c": ["x", "y"]}, "d": "text", "e": None}
    assert parse_overrides(["a=1", "a=2"]) == {"a": 2}


@pytest.mark.parametrize("pair", ["novalue", "=3", "a=[1, 2"])
def test_malformed_override_names_itself(pair: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_overrides([pair])


def test_override_below_a_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="'a' is set to a value"):
        parse_overrides(["a=1", "a.b=2"])


def test_later_layers_win_key_by_key() -> None:
    base = {"model": {"dim": 64, "epochs": 10}, "seeds": [0, 1, 2]}
    merged = merge(base, {"model": {"epochs": 20}}, {"seeds": [0]})
    assert merged == {"model": {"dim": 64, "epochs": 20}, "seeds": [0]}
    assert base == {"model": {"dim": 64, "epochs": 10}, "seeds": [0, 1, 2]}  # untouched


def test_empty_mapping_replaces_the_section() -> None:
    config = {"baselines": {"itemknn": {"model": {"kind": "itemknn"}}}, "name": "x"}
    assert merge(config, parse_overrides(["baselines={}"])) == {"baselines": {}, "name": "x"}
    nested = {"model": {"rank_level": {"w_h": 3.0}, "dim": 64}}
    cleared = merge(nested, parse_overrides(["model.rank_level={}"]))
    assert cleared == {"model": {"rank_level": {}, "dim": 64}}
    refilled = merge(config, parse_overrides(["baselines={}", "baselines.pop.model.kind=pop"]))
    assert refilled == {"baselines": {"pop": {"model": {"kind": "pop"}}}, "name": "x"}


def test_a_section_of_another_kind_replaces_the_old_kinds_settings() -> None:
    demo = {"llm": {"backend": {"kind": "transformers", "batch_size": 8}, "retries": 2}}
    switched = merge(demo, {"llm": {"backend": {"kind": "embedding"}}})
    assert switched == {"llm": {"backend": {"kind": "embedding"}, "retries": 2}}
    same = merge(demo, {"llm": {"backend": {"kind": "transformers", "compact": True}}})
    assert same["llm"]["backend"] == {"kind": "transformers", "batch_size": 8, "compact": True}
    unnamed = merge(demo, {"llm": {"backend": {"batch_size": 4}}})  # no kind: key by key
    assert unnamed["llm"]["backend"] == {"kind": "transformers", "batch_size": 4}
    then_set = merge(demo, {"llm": {"backend": {"kind": "openai"}}},
                     parse_overrides(["llm.backend.model=big"]))  # fmt: skip
    assert then_set["llm"]["backend"] == {"kind": "openai", "model": "big"}


def test_empty_mapping_of_a_layer_adds_nothing() -> None:
    """A command's flags layer holds empty sections when no flag was given."""
    defaults = {"source": {"kind": "synthetic"}, "prepare": {"kcore": 5}}
    assert merge(defaults, {"source": {}, "prepare": {}}) == defaults
