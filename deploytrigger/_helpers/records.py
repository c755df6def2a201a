"""Records: classes that behave as frozen dataclasses, made without importing :mod:`dataclasses`.

The public models, the settings and the parent run are records. ``dataclasses``
(with the ``inspect``, ``ast`` and ``dis`` it imports) and the methods it compiles
for each class are a cost a cold start pays before its first request needs any of
it. :func:`record` gives a class what ``@dataclass(frozen=True)`` would: an
``__init__`` taking the fields in order, ``__repr__``, ``__eq__`` and ``__hash__``
over the compared fields, ``__setattr__``/``__delattr__`` that raise
:class:`dataclasses.FrozenInstanceError`, and ``__match_args__``. What
``dataclasses`` itself reads (``__dataclass_fields__``, ``__dataclass_params__``)
is made the first time something asks for it, so ``dataclasses.fields``,
``replace``, ``asdict``, ``is_dataclass`` and subclassing with ``@dataclass`` work
as on a dataclass, and pay for the import then.

Type checkers see a ``dataclass_transform`` (PEP 681) decorator, frozen by
default, so a record's constructor is checked as a frozen dataclass's is.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Tuple, Type, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorated: decorated


T = TypeVar("T")


class _Missing:
    """No default (``MISSING``), or a default made by a factory (``FACTORY``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


MISSING: Any = _Missing("MISSING")
FACTORY: Any = _Missing("<factory>")
"""The default a signature shows for a field made by a factory, as in ``dataclasses``."""


class Field:
    """How one field is made, compared and shown (what :func:`field` returns)."""

    __slots__ = ("compare", "default", "default_factory", "repr")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,
        compare: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def keywords(self) -> Dict[str, Any]:
        """These settings as keywords of :func:`dataclasses.field`."""
        given = {"default": self.default, "default_factory": self.default_factory}
        options = {key: value for key, value in given.items() if value is not MISSING}
        return {**options, "repr": self.repr, "compare": self.compare}


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] = MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field's default (or its factory), and whether ``repr`` shows it and ``==`` compares it."""
    return Field(default, default_factory, repr, compare)


def _frozen_error(message: str) -> AttributeError:
    import dataclasses  # only a caller who tries to change a record pays for the import

    return dataclasses.FrozenInstanceError(message)


class _DataclassView:
    """One of the attributes ``dataclasses`` reads on a class, made on first use.

    ``dataclasses`` makes a frozen dataclass of the record's fields, and both of
    its attributes replace their views on the record.
    """

    def __init__(self, owner: type, fields: Mapping[str, Field], attribute: str) -> None:
        self.owner = owner
        self.fields = fields
        self.attribute = attribute

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        import dataclasses

        annotations = _annotations(self.owner)
        shadow = dataclasses.make_dataclass(
            self.owner.__name__,
            [
                (name, annotations[name], dataclasses.field(**spec.keywords()))
                for name, spec in self.fields.items()
            ],
            frozen=True,
        )
        for attribute in ("__dataclass_fields__", "__dataclass_params__"):
            type.__setattr__(self.owner, attribute, shadow.__dict__[attribute])
        return shadow.__dict__[self.attribute]


def _annotations(cls: type) -> Dict[str, Any]:
    """The annotations ``cls`` itself declares (not its bases'), as written."""
    # Not inspect.get_annotations: importing inspect is what records avoid. Python
    # 3.8 to 3.13 keep a class's own annotations in its namespace.
    return dict(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063


def _fields_of(cls: type) -> Dict[str, Field]:
    """The fields ``cls`` annotates, in order, each class attribute taken as its default."""
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"record {cls.__name__} cannot extend {base.__name__}")
    fields: Dict[str, Field] = {}
    defaulted = False  # a field before this one has a default (or a factory)
    for name in _annotations(cls):
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        if spec.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
            if spec.default_factory is MISSING and defaulted:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        else:
            setattr(cls, name, spec.default)
        defaulted = defaulted or spec.default is not MISSING or spec.default_factory is not MISSING
        fields[name] = spec
    return fields


def _init_function(cls: type, fields: Mapping[str, Field]) -> Callable[..., None]:
    """``__init__``, compiled once for the class: it stores each field as ``dataclasses``' does.

    It is made in the class's module (as ``dataclasses`` makes it), so that tools that
    resolve its annotations (``typing.get_type_hints``, Sphinx) find the names they use;
    the defaults and factories reach it as arguments of an outer function.
    """
    given: Dict[str, Any] = {"_record_factory": FACTORY}
    parameters: List[str] = []
    body: List[str] = []
    for name, spec in fields.items():
        if spec.default_factory is not MISSING:
            given[f"_record_factory_{name}"] = spec.default_factory
            parameters.append(f"{name}=_record_factory")
            body.append(
                f"    _record_values[{name!r}] = "
                f"_record_factory_{name}() if {name} is _record_factory else {name}"
            )
            continue
        if spec.default is not MISSING:
            given[f"_record_default_{name}"] = spec.default
            parameters.append(f"{name}=_record_default_{name}")
        else:
            parameters.append(name)
        body.append(f"    _record_values[{name!r}] = {name}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = "\n".join(
        [
            f"def _record_make({', '.join(given)}):",
            f"  def __init__(self, {', '.join(parameters)}):",
            "    _record_values = self.__dict__",
            *body,
            "  return __init__",
        ]
    )
    module = sys.modules.get(cls.__module__)
    namespace: Dict[str, Any] = {}
    # The source holds only field names (identifiers) and the names made above.
    exec(source, vars(module) if module else {}, namespace)
    init: Callable[..., None] = namespace["_record_make"](**given)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    annotations = _annotations(cls)
    init.__annotations__ = {**{name: annotations[name] for name in fields}, "return": None}
    return init


def _values(names: Tuple[str, ...]) -> Callable[[Any], Tuple[Any, ...]]:
    """A function giving an object's attributes ``names`` as a tuple (of one, for one name)."""
    if len(names) == 1:
        (only,) = names
        return lambda instance: (getattr(instance, only),)
    if not names:
        return lambda instance: ()
    return attrgetter(*names)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: Type[T]) -> Type[T]:
    """Make ``cls`` a record: a frozen dataclass of its annotated fields (see the module)."""
    fields = _fields_of(cls)
    names = tuple(fields)
    shown = tuple(name for name, spec in fields.items() if spec.repr)
    compared = _values(tuple(name for name, spec in fields.items() if spec.compare))

    def __repr__(self: Any) -> str:
        shown_values = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({shown_values})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return compared(self) == compared(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(compared(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            raise TypeError(f"cannot overwrite attribute {name} in record {cls.__name__}")
    own = cls.__dict__
    methods: Dict[str, Any] = {"__setattr__": __setattr__, "__delattr__": __delattr__}
    # A class's own methods win, as with dataclasses (a class that defines ``__eq__``
    # alone gets ``__hash__ = None`` from Python, which is not one of its own).
    if "__init__" not in own:
        methods["__init__"] = _init_function(cls, fields)
    if "__repr__" not in own:
        methods["__repr__"] = __repr__
    if "__eq__" not in own:
        methods["__eq__"] = __eq__
    if own.get("__hash__") is None:
        methods["__hash__"] = __hash__
    for name, method in methods.items():
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    setattr(cls, "__match_args__", names)  # noqa: B010 - type checkers refuse the plain assignment
    for attribute in ("__dataclass_fields__", "__dataclass_params__"):
        setattr(cls, attribute, _DataclassView(cls, fields, attribute))
    return cls
