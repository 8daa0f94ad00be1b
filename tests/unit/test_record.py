"""redpak.record: the data classes of the launch and package paths behave as the standard
library's dataclasses did for every feature redpak uses (compared side by side)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from redpak import record as rec
from redpak.record import field, record


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False)
    cache: dict = field(default_factory=dict, hash=False, repr=False)


@dataclasses.dataclass(frozen=True)
class StdPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    note: str = dataclasses.field(default="", compare=False)
    cache: dict = dataclasses.field(default_factory=dict, hash=False, repr=False)


@record
class Box:
    items: list[int] = field(default_factory=list)
    label: str = "box"


def test_init_positional_keyword_and_defaults() -> None:
    p = Point(1, tags=("a",))
    assert (p.x, p.y, p.tags, p.note, p.cache) == (1, 0, ("a",), "", {})
    assert Point(1, 2, ("t",), "n", {"k": 1}).cache == {"k": 1}
    with pytest.raises(TypeError):
        Point()                                   # x is required
    with pytest.raises(TypeError):
        Point(1, z=3)                             # no such field


def test_default_factory_gives_each_instance_its_own_value() -> None:
    a, b = Box(), Box()
    a.items.append(1)
    assert b.items == [] and a.items == [1]


def test_same_semantics_as_dataclasses() -> None:
    for args in [(1,), (1, 2), (1, 2, ("t",), "note")]:
        mine, std = Point(*args), StdPoint(*args)
        assert repr(mine).replace("Point", "X") == repr(std).replace("StdPoint", "X")
    assert Point(1, note="a") == Point(1, note="b")             # compare=False
    assert Point(1) != Point(2) and Point(1) != (1, 0)
    assert hash(Point(1, cache={"a": 1})) == hash(Point(1))     # hash=False
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert Point.__match_args__ == StdPoint.__match_args__


def test_frozen_refuses_assignment_and_deletion() -> None:
    p = Point(1)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        p.x = 2
    with pytest.raises(rec.FrozenInstanceError):
        del p.y
    assert p.x == 1


def test_mutable_record_is_unhashable_and_assignable() -> None:
    b = Box()
    b.label = "other"
    assert b == Box(label="other")
    with pytest.raises(TypeError):
        hash(b)


def test_fields_replace_asdict() -> None:
    p = Point(1, 2, ("t",))
    assert [f.name for f in rec.fields(Point)] == ["x", "y", "tags", "note", "cache"]
    assert rec.fields(p) == rec.fields(Point)
    q = rec.replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, ("t",)) and p.y == 2
    assert rec.asdict(Box([1, 2], "b")) == {"items": [1, 2], "label": "b"}
    assert rec.asdict([Point(1)])[0]["x"] == 1
    assert rec.is_record(p) and rec.is_record(Point) and not rec.is_record(object())
    with pytest.raises(TypeError):
        rec.fields(object())


def test_copy_and_pickle_keep_values() -> None:
    p = Point(3, 4, ("a",))
    assert copy.copy(p) == p and copy.deepcopy(p) == p
    assert pickle.loads(pickle.dumps(p)) == p


def test_definition_errors() -> None:
    with pytest.raises(TypeError, match="non-default field 'b' follows"):
        @record
        class Bad:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="mutable default"):
        @record
        class Shared:
            a: list = []                      # noqa: RUF012 - the error under test

    with pytest.raises(ValueError):
        field(default=1, default_factory=int)


def test_class_defaults_stay_readable_and_factories_are_not_class_attributes() -> None:
    assert Point.y == 0 and Point.note == ""
    assert "cache" not in Point.__dict__
