# Plain data classes for the launch and package paths, built at import for a fraction of
# what the standard library's dataclasses cost (measured in bench/bench_cli.py: ~0.5 ms per
# class there, i.e. ~20 ms of every cold launch and package command).
"""Records: the subset of `dataclasses` that redpak uses, cheap to define.

    @record                      mutable record: __init__, __repr__, __eq__, unhashable
    @record(frozen=True)         immutable: also __hash__; assignment raises
                                 FrozenInstanceError (an AttributeError)
    field(default=, default_factory=, compare=, hash=, repr=)
    fields(obj_or_cls), replace(obj, **changes), asdict(obj), is_record(obj)

Fields are the class's own annotations, in order (annotations are never evaluated: the
modules use `from __future__ import annotations`); a field with a default may not precede
one without. Records do not inherit fields from base classes.

`dataclasses` generates six methods per class with exec() when the class is defined. Here
equality, hashing, repr and immutability are shared functions reading the class's field
table, and only __init__ is generated, on the class's first instantiation, so a class that
a command never instantiates costs nothing but its field table.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FrozenInstanceError", "MISSING", "asdict", "field", "fields", "is_record",
           "record", "replace"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    """One field of a record (what `fields()` returns)."""

    __slots__ = ("name", "default", "default_factory", "compare", "hash", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True, hash: bool | None = None,  # noqa: A002
                 repr: bool = True) -> None:  # noqa: A002
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("a field cannot have both a default and a default_factory")
        self.name = ""
        self.default, self.default_factory = default, default_factory
        self.compare, self.hash, self.repr = compare, hash, repr

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          compare: bool = True, hash: bool | None = None,  # noqa: A002
          repr: bool = True) -> Any:  # noqa: A002
    """Field options, as dataclasses.field."""
    return Field(default, default_factory, compare, hash, repr)


def _fields_of(cls: type) -> tuple[Field, ...]:
    out: list[Field] = []
    seen_default = False
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if isinstance(value, Field):
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__qualname__}: non-default field {name!r} follows a "
                            "field with a default")
        seen_default = seen_default or has_default
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"{cls.__qualname__}.{name}: mutable default, use "
                             "default_factory")
        out.append(spec)
    return tuple(out)


def _make_init(cls: type) -> Callable[..., None]:
    """The class's __init__, compiled once (the keyword defaults are the field defaults)."""
    specs: tuple[Field, ...] = cls.__record_fields__
    frozen = cls.__record_frozen__
    params, body = [], []
    env: dict[str, Any] = {"MISSING": MISSING, "_set": object.__setattr__}
    for i, f in enumerate(specs):
        if f.default_factory is not MISSING:
            env[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            value = f"_f{i}() if {f.name} is MISSING else {f.name}"
        elif f.default is not MISSING:
            env[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
            value = f.name
        else:
            params.append(f.name)
            value = f.name
        body.append(f"_set(self, {f.name!r}, {value})" if frozen
                    else f"self.{f.name} = {value}")
    src = (f"def __init__(self, {', '.join(params)}):\n    "
           + ("\n    ".join(body) or "pass") + "\n")
    exec(src, env)  # noqa: S102 - text built from the class's own field names only
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _first_init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    owner = next(c for c in cls.__mro__ if "__record_fields__" in c.__dict__)
    owner.__init__ = _make_init(owner)
    owner.__init__(self, *args, **kwargs)


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                      for f in self.__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({inner})"


def _key(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__record_compare__)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return self is other or _key(self) == _key(other)


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, name) for name in self.__record_hash__))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def record(cls: type | None = None, *, frozen: bool = False) -> Any:
    """Class decorator: see the module's docstring."""
    def wrap(klass: type) -> type:
        specs = _fields_of(klass)
        klass.__record_fields__ = specs
        klass.__record_frozen__ = frozen
        klass.__record_compare__ = tuple(f.name for f in specs if f.compare)
        klass.__record_hash__ = tuple(f.name for f in specs
                                      if (f.compare if f.hash is None else f.hash))
        klass.__match_args__ = tuple(f.name for f in specs)
        klass.__init__ = _first_init
        if "__repr__" not in klass.__dict__:
            klass.__repr__ = _repr
        if "__eq__" not in klass.__dict__:
            klass.__eq__ = _eq
        if frozen:
            if "__hash__" not in klass.__dict__ or klass.__dict__["__hash__"] is None:
                klass.__hash__ = _hash
            klass.__setattr__ = _frozen_setattr
            klass.__delattr__ = _frozen_delattr
        elif "__hash__" not in klass.__dict__:
            klass.__hash__ = None  # mutable and compared by value: unhashable
        return klass

    return wrap if cls is None else wrap(cls)


def is_record(obj: Any) -> bool:
    """True for a record class or instance."""
    return hasattr(obj if isinstance(obj, type) else type(obj), "__record_fields__")


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order. Raises TypeError."""
    try:
        return (obj if isinstance(obj, type) else type(obj)).__record_fields__
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def replace(obj: Any, **changes: Any) -> Any:
    """A new record like OBJ with some fields changed (through __init__)."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def asdict(obj: Any) -> Any:
    """Records (also inside lists, tuples and dicts) turned into dicts, recursively."""
    if is_record(obj) and not isinstance(obj, type):
        return {f.name: asdict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj
