"""Tests for building parameter dataclasses from dicts (lipcert.config_validation)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import pytest
import yaml

from lipcert.config_validation import check_range, from_dict

WHERE = "params/two_moons.yaml: train"


@dataclasses.dataclass(frozen=True)
class Optimizer:
    lr: float
    betas: tuple[float, ...] = (0.9, 0.999)
    milestones: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        check_range("lr", self.lr, lo=0.0, lo_inclusive=False)


@dataclasses.dataclass(frozen=True)
class Train:
    epochs: int
    loss: Literal["cll", "gloro", "ce"]
    optimizer: Optimizer
    p: float = 1e-12
    augment: bool = False
    name: str = "moons"
    eps_grid: tuple[float, float] = (0.15, 0.3)
    scheduler: Optional[Optimizer] = None
    note: str | None = None
    extra: dict[str, float] = dataclasses.field(default_factory=dict)
    anything: Any = None
    derived: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, lo=1)
        check_range("p", self.p, lo=0.0, hi=1.0, lo_inclusive=False, hi_inclusive=False)


GOOD = {"epochs": 1000, "loss": "cll", "optimizer": {"lr": 1e-3, "betas": [0.8, 0.99], "milestones": [400]}}


def _expect_error(data: dict, *fragments: str) -> str:
    with pytest.raises(ValueError) as info:
        from_dict(Train, data, WHERE)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_happy_path_nested_with_conversions_and_defaults() -> None:
    data = {
        **GOOD,
        "p": 1e-3,
        "augment": True,
        "eps_grid": [0.1, 1],
        "scheduler": {"lr": 2},
        "note": "hello",
        "extra": {"a": 2},
        "anything": [1, "x"],
    }
    train = from_dict(Train, data, WHERE)
    assert train.optimizer == Optimizer(lr=1e-3, betas=(0.8, 0.99), milestones=[400])
    assert isinstance(train.optimizer.betas, tuple)
    assert train.eps_grid == (0.1, 1.0) and all(type(v) is float for v in train.eps_grid)
    assert train.scheduler == Optimizer(lr=2.0) and type(train.scheduler.lr) is float
    assert train.extra == {"a": 2.0} and type(train.extra["a"]) is float
    assert (train.p, train.augment, train.note, train.anything, train.name) == (1e-3, True, "hello", [1, "x"], "moons")
    minimal = from_dict(Train, GOOD, WHERE)
    assert minimal.scheduler is None and minimal.note is None and minimal.p == 1e-12 and minimal.derived == 0
    assert from_dict(Train, {**GOOD, "scheduler": None}, WHERE).scheduler is None


def test_yaml_document_round_trip() -> None:
    text = """
epochs: 1000
loss: gloro
optimizer:
  lr: 1.0e-3
  milestones: [400]
"""
    train = from_dict(Train, yaml.safe_load(text), WHERE)
    assert train.loss == "gloro" and train.optimizer.lr == 1e-3 and train.optimizer.milestones == [400]


def test_unknown_key_names_key_where_allowed_keys_and_suggestion() -> None:
    message = _expect_error({**GOOD, "epoch": 3}, "unknown key 'epoch'", WHERE, "did you mean 'epochs'?")
    allowed = sorted(f.name for f in dataclasses.fields(Train) if f.init)
    assert str(allowed) in message
    assert "derived" not in message  # init=False fields are not settable
    message = _expect_error({**GOOD, "zzzz": 3}, "unknown key 'zzzz'", "allowed keys")
    assert "did you mean" not in message


def test_unknown_key_in_nested_section_names_the_nested_location() -> None:
    _expect_error(
        {**GOOD, "optimizer": {"lr": 1e-3, "bettas": [0.9]}},
        f"{WHERE}.optimizer: unknown key 'bettas'",
        "did you mean 'betas'?",
        "['betas', 'lr', 'milestones']",
    )


def test_missing_required_key() -> None:
    data = {key: value for key, value in GOOD.items() if key != "loss"}
    _expect_error(data, WHERE, "missing required key 'loss'", "one of ['cll', 'gloro', 'ce']")
    _expect_error({**GOOD, "optimizer": {}}, f"{WHERE}.optimizer: missing required key 'lr'")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epochs", 10.0, "key 'epochs' expects int, got 10.0 (float)"),
        ("epochs", True, "key 'epochs' expects int, got True (bool)"),
        ("epochs", "10", "key 'epochs' expects int, got '10' (str)"),
        ("p", "small", "key 'p' expects float, got 'small' (str)"),
        ("p", False, "key 'p' expects float, got False (bool)"),
        ("augment", 1, "key 'augment' expects bool, got 1 (int)"),
        ("augment", "yes", "key 'augment' expects bool, got 'yes' (str)"),
        ("name", 5, "key 'name' expects str, got 5 (int)"),
        ("loss", "CLL", "key 'loss' expects one of ['cll', 'gloro', 'ce'], got 'CLL' (str)"),
        ("optimizer", [1e-3], "key 'optimizer' expects mapping for Optimizer, got [0.001] (list)"),
        ("eps_grid", [0.1], "key 'eps_grid' expects tuple[float, float], got [0.1] (list)"),
        ("eps_grid", 0.1, "key 'eps_grid' expects tuple[float, float], got 0.1 (float)"),
        ("note", 3, "key 'note' expects str or None, got 3 (int)"),
        ("scheduler", 3, "key 'scheduler' expects mapping for Optimizer or None, got 3 (int)"),
        ("extra", {"a": "b"}, "key 'extra.a' expects float, got 'b' (str)"),
        ("extra", [1], "key 'extra' expects dict[str, float], got [1] (list)"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(key: str, value: Any, expected: str) -> None:
    _expect_error({**GOOD, key: value}, f"{WHERE}: {expected}")


def test_wrong_element_type_names_the_element() -> None:
    _expect_error(
        {**GOOD, "optimizer": {"lr": 1e-3, "betas": [0.9, "x"]}},
        f"{WHERE}.optimizer: key 'betas[1]' expects float, got 'x' (str)",
    )
    _expect_error(
        {**GOOD, "optimizer": {"lr": 1e-3, "milestones": [400, 600.5]}},
        "key 'milestones[1]' expects int, got 600.5 (float)",
    )


def test_yaml_exponent_without_dot_gets_a_hint() -> None:
    value = yaml.safe_load("lr: 1e-3")["lr"]
    assert value == "1e-3"  # PyYAML (YAML 1.1) reads this as a string
    _expect_error({**GOOD, "optimizer": {"lr": value}}, "key 'lr' expects float, got '1e-3' (str)", "write 1.0e-3")


def test_post_init_range_error_is_prefixed_with_where() -> None:
    _expect_error({**GOOD, "p": 1}, WHERE, "p must be in (0.0, 1.0), got 1.0")
    _expect_error({**GOOD, "epochs": 0}, WHERE, "epochs must be in [1, inf), got 0")
    _expect_error({**GOOD, "optimizer": {"lr": 0}}, f"{WHERE}.optimizer: lr must be in (0.0, inf), got 0.0")


def test_bad_top_level_inputs() -> None:
    with pytest.raises(ValueError, match=r"params/two_moons.yaml: train: expected a mapping.*\[1, 2\] \(list\)"):
        from_dict(Train, [1, 2], WHERE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"keys must be strings, got \[1\]"):
        from_dict(Train, {**GOOD, 1: 2}, WHERE)
    with pytest.raises(TypeError, match="needs a dataclass type"):
        from_dict(dict, {}, WHERE)  # type: ignore[type-var]

    @dataclasses.dataclass(frozen=True)
    class Unsupported:
        values: set[int]

    with pytest.raises(TypeError, match="field 'values' has a type hint from_dict does not support"):
        from_dict(Unsupported, {"values": [1]}, WHERE)


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        (dict(value=0.0, lo=0.0), True),
        (dict(value=0.0, lo=0.0, lo_inclusive=False), False),
        (dict(value=1.0, hi=1.0), True),
        (dict(value=1.0, hi=1.0, hi_inclusive=False), False),
        (dict(value=0.5, lo=0.0, hi=1.0), True),
        (dict(value=-0.1, lo=0.0, hi=1.0), False),
        (dict(value=1.1, lo=0.0, hi=1.0), False),
        (dict(value=float("nan")), False),
        (dict(value=-1e300), True),
        (dict(value=3, lo=1), True),
    ],
)
def test_check_range(kwargs: dict, ok: bool) -> None:
    if ok:
        assert check_range("lam", **kwargs) == kwargs["value"]
    else:
        with pytest.raises(ValueError, match=r"^lam must be in "):
            check_range("lam", **kwargs)


def test_check_range_messages_and_type_errors() -> None:
    with pytest.raises(ValueError, match=r"^lam must be in \[0\.0, 1\.0\), got 1\.0$"):
        check_range("lam", 1.0, lo=0.0, hi=1.0, hi_inclusive=False)
    with pytest.raises(ValueError, match=r"^lam must be a number, got 'x'$"):
        check_range("lam", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam must be a number, got True"):
        check_range("lam", True)


@dataclasses.dataclass(frozen=True)
class Section:
    """A nested section that reads its own mapping: ``{"kind": k, <anything>}`` with the rest kept as ``values``."""

    kind: str
    values: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data, where):
        if "kind" not in data:
            raise ValueError(f"{where}: needs 'kind'")
        return cls(kind=data["kind"], values={k: v for k, v in data.items() if k != "kind"})


@dataclasses.dataclass(frozen=True)
class Outer:
    section: Section
    other: Optimizer | None = None


def test_nested_dataclass_with_from_mapping_reads_its_own_mapping_and_instances_pass() -> None:
    built = from_dict(Outer, {"section": {"kind": "a", "x": 1, "y": [2]}}, WHERE)
    assert built.section == Section("a", {"x": 1, "y": [2]})
    with pytest.raises(ValueError, match=r"^params/two_moons.yaml: train.section: needs 'kind'$"):
        from_dict(Outer, {"section": {"x": 1}}, WHERE)
    with pytest.raises(ValueError, match=r"key 'section' expects mapping for Section, got 3"):
        from_dict(Outer, {"section": 3}, WHERE)
    # an already-built instance is taken as it is (also without a from_mapping)
    opt = Optimizer(lr=0.5)
    same = from_dict(Outer, {"section": built.section, "other": opt}, WHERE)
    assert same.section is built.section and same.other is opt


def test_unknown_key_message_with_context() -> None:
    from lipcert.config_validation import unknown_key_message

    assert unknown_key_message("f.yaml: loss", "lamda", ["p", "lam", "eps"], " for loss 'cll'") == (
        "f.yaml: loss: unknown key 'lamda' (did you mean 'lam'?) for loss 'cll'; allowed keys: ['eps', 'lam', 'p']")
    assert unknown_key_message("w", "zzz", ["a"]) == "w: unknown key 'zzz'; allowed keys: ['a']"
