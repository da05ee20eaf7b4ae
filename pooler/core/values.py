"""``slot_init``: a cheaper ``__init__`` for the frozen, slotted values built once per share.

A frozen dataclass's generated ``__init__`` stores each field through the generic
``object.__setattr__`` (the class's own ``__setattr__`` refuses). The share path builds a few
such values per share (the ``Persist`` of its counts, the ``Send`` of its answer), and that
route costs about as much as the rest of an ordinary share's bookkeeping. ``slot_init`` gives
the class an ``__init__`` that writes each slot through its member descriptor instead: the
same object (frozen, slotted, equal, hashable, matched, printed as before), built in about
half the time. Only for dataclasses whose fields are all plain (no defaults, no
``__post_init__``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def slot_init(cls: type[T]) -> type[T]:
    """Replace the frozen, slotted dataclass ``cls``'s ``__init__`` (see the module docstring)."""
    params: Any = getattr(cls, "__dataclass_params__", None)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__") or any(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING or not f.init
        for f in fields
    ):
        raise TypeError(f"{cls.__name__} has defaults or a __post_init__: keep its generated __init__")
    names = [f.name for f in fields]
    setters = [f"_set_{name}" for name in names]
    body = "".join(f"        {setter}(self, {name})\n" for setter, name in zip(setters, names, strict=True))
    source = (
        f"def make({', '.join(setters)}):\n"
        f"    def __init__(self, {', '.join(names)}):\n{body or '        pass'}\n"
        "    return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # the code is built from the field names above, nothing else
    init = namespace["make"](*(cls.__dict__[name].__set__ for name in names))
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
