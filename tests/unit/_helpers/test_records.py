"""Records behave as frozen dataclasses: each property is checked against a real one."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import pytest

from deploytrigger import Deployment, Flow, FlowRun, LogRecord, ParentRun, State
from deploytrigger._helpers import records
from deploytrigger._parents.linking import Dialect
from deploytrigger._results.results import StorageBlock
from deploytrigger.settings import Settings

Maker = Callable[..., Type[Any]]


def make(decorate: Callable[[Any], Any], field: Callable[..., Any]) -> Type[Any]:
    """The same class body, made a record or a frozen dataclass."""

    class Point:
        """A point."""

        x: int
        y: int = 0
        label: Optional[str] = None
        tags: List[str] = field(default_factory=list)
        note: str = field(default="", repr=False, compare=False)

        def norm(self) -> int:
            return abs(self.x) + abs(self.y)

    return decorate(Point)


@pytest.fixture(scope="module")
def pair() -> Tuple[Type[Any], Type[Any]]:
    """(a record, the frozen dataclass of the same body)."""
    return make(records.record, records.field), make(
        dataclasses.dataclass(frozen=True), dataclasses.field
    )


def both(pair: Tuple[Type[Any], Type[Any]], *args: Any, **kwargs: Any) -> Tuple[Any, Any]:
    record, dataclass = pair
    return record(*args, **kwargs), dataclass(*args, **kwargs)


def test_the_constructor_has_the_dataclass_signature(pair: Tuple[Type[Any], Type[Any]]) -> None:
    record, dataclass = pair
    assert str(inspect.signature(record)) == str(inspect.signature(dataclass))
    assert record.__init__.__qualname__ == "make.<locals>.Point.__init__"
    mine, theirs = both(pair, 1, 2, "a", ["t"], note="n")
    assert vars(mine) == vars(theirs)
    assert record(3).tags is not record(3).tags  # a fresh default from the factory


def test_a_missing_or_unknown_argument_is_refused_as_by_the_dataclass(
    pair: Tuple[Type[Any], Type[Any]],
) -> None:
    for arguments in [(), (1, 2, 3, [], "n", "extra")]:
        for cls in pair:
            with pytest.raises(TypeError):
                cls(*arguments)
    for cls in pair:
        with pytest.raises(TypeError):
            cls(1, z=2)


def test_repr_eq_and_hash_are_the_dataclass_ones(pair: Tuple[Type[Any], Type[Any]]) -> None:
    mine, theirs = both(pair, 1, 2, "a", note="hidden")
    assert repr(mine) == repr(theirs) == "make.<locals>.Point(x=1, y=2, label='a', tags=[])"
    record, dataclass = pair
    assert mine == record(1, 2, "a", note="other")  # note is not compared
    assert mine != record(1, 3, "a")
    assert mine != theirs  # another class, as a dataclass compares
    assert (mine == object()) is False
    hashable_mine, hashable_theirs = record(1, tags=()), dataclass(1, tags=())
    assert hash(hashable_mine) == hash(hashable_theirs)
    for instance in both(pair, 1):
        with pytest.raises(TypeError, match="unhashable"):  # tags is a list, as a dataclass says
            hash(instance)
    assert mine.norm() == 3


def test_fields_cannot_be_set_or_deleted(pair: Tuple[Type[Any], Type[Any]]) -> None:
    for instance in both(pair, 1):
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
            instance.x = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'new'"):
            instance.new = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'x'"):
            del instance.x


def test_dataclasses_functions_work_on_records(pair: Tuple[Type[Any], Type[Any]]) -> None:
    record, dataclass = pair
    mine, theirs = both(pair, 1, 2, tags=["t"])
    assert dataclasses.is_dataclass(record) and dataclasses.is_dataclass(mine)
    assert [
        (f.name, f.default, f.default_factory, f.repr, f.compare) for f in dataclasses.fields(mine)
    ] == [
        (f.name, f.default, f.default_factory, f.repr, f.compare)
        for f in dataclasses.fields(theirs)
    ]
    assert dataclasses.replace(mine, y=5) == record(1, 5, tags=["t"])
    assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)
    assert dataclasses.astuple(mine) == dataclasses.astuple(theirs)
    assert record.__dataclass_params__.frozen
    assert record.__match_args__ == ("x", "y", "label", "tags", "note")
    assert record.__match_args__ == getattr(dataclass, "__match_args__", record.__match_args__)


def test_a_dataclass_can_extend_a_record(pair: Tuple[Type[Any], Type[Any]]) -> None:
    record, _ = pair

    @dataclasses.dataclass(frozen=True)
    class Labelled(record):
        colour: str = "red"

    labelled = Labelled(1, colour="blue")
    assert repr(labelled).endswith("Labelled(x=1, y=0, label=None, tags=[], colour='blue')")
    assert [f.name for f in dataclasses.fields(labelled)][-2:] == ["note", "colour"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        labelled.colour = "green"


def test_records_pickle_and_copy(pair: Tuple[Type[Any], Type[Any]]) -> None:
    record, _ = pair
    point = record(1, 2, tags=["t"])
    # A class made in a function cannot be pickled by reference: use a model.
    flow = Flow(id=uuid.uuid4(), name="add", raw={"id": "x"})
    assert pickle.loads(pickle.dumps(flow)) == flow
    assert copy.copy(point) == point
    deep = copy.deepcopy(point)
    assert deep == point and deep.tags is not point.tags


def test_post_init_runs_after_the_fields_are_set() -> None:
    seen: Dict[str, Any] = {}

    @records.record
    class Checked:
        value: int

        def __post_init__(self) -> None:
            seen["value"] = self.value

    Checked(4)
    assert seen == {"value": 4}


def test_a_class_s_own_methods_win() -> None:
    @records.record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and other.name.lower() == self.name.lower()

    assert repr(Named("A")) == "<A>"
    assert Named("A") == Named("a")
    # Python sets __hash__ to None beside an own __eq__; frozen dataclasses add theirs.
    assert hash(Named("A")) == hash(("A",))


def test_wrong_definitions_are_refused_as_by_dataclasses() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @records.record
        class Unordered:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="both default and default_factory"):
        records.field(default=1, default_factory=int)
    with pytest.raises(TypeError, match="cannot overwrite attribute __setattr__"):

        @records.record
        class Mutable:
            a: int

            def __setattr__(self, name: str, value: Any) -> None:
                object.__setattr__(self, name, value)

    @records.record
    class Base:
        a: int

    with pytest.raises(TypeError, match="record Child cannot extend Base"):

        @records.record
        class Child(Base):
            b: int


@pytest.mark.parametrize(
    "cls", [State, FlowRun, Deployment, Flow, LogRecord, Settings, ParentRun, Dialect, StorageBlock]
)
def test_the_library_s_records_are_frozen_dataclasses_to_their_callers(cls: Type[Any]) -> None:
    assert dataclasses.is_dataclass(cls)
    assert [f.name for f in dataclasses.fields(cls)] == list(cls.__annotations__)
    assert list(inspect.signature(cls).parameters) == list(cls.__annotations__)
    assert cls.__dataclass_params__.frozen and cls.__dataclass_params__.eq
