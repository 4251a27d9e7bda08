"""safe_load's restricted unpickler: a second defence that does not trust the static scan.

The scan (``_pickle``) judges a pickle without running it. This unpickler runs it, on the real
objects, with the same allowlist and the same argument rules (:class:`CallRules`), so a file
the scanner got wrong still cannot execute code:

* ``find_class`` returns only allowlisted globals, and remembers each one (by identity) with its
  kind (class / function / value) and its argument rules;
* every call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) must call such a remembered global; a
  computed callable (a value some earlier call returned) is refused, and so is a "value" global;
* every argument must be inert: no class, function, module, method or other callable anywhere
  inside it (through tuples, lists, sets, dicts and object arrays), except an allowlisted class
  or declared function at a position the callee declares;
* BUILD may not set a dunder attribute, may not target an allowlisted global itself, and is
  refused when the object carries its own instance-level ``__setstate__``; SETITEM(S),
  APPEND(S) and ADDITEMS may not modify a global nor store an unlisted callable;
* joblib's object arrays (a nested pickle after the wrapper) are read with this same unpickler,
  not with joblib's inner one, which only routes ``find_class``.

PyTorch's ``torch/_weights_only_unpickler.py`` is the model: a dispatch over the risky opcodes
with a per-type BUILD. It is not used directly because its allowlist is torch-only; torch
checkpoints still go through ``torch.load(weights_only=True)`` in :mod:`safe_load`.

Hand-written (subclassing the pure-Python ``_PyUnpickler`` and replacing single opcode
handlers) because no maintained library restricts *arguments* rather than names: ``fickling``'s
loader and ``restrictedpickle``-style recipes only filter ``find_class``.
"""

from __future__ import annotations

import functools
import pickle
import types
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import IO, Any

from chainproof.errors import ScanFindingError
from chainproof.scan.allowlist import Allowlist, CallRules

_ATOMS: frozenset[type] = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray, slice, range}
)
_CALLABLE_TYPES: tuple[type, ...] = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.CodeType,
    types.FrameType,
    types.GeneratorType,
    functools.partial,
    classmethod,
    staticmethod,
    property,
)
#: the pure-Python unpickler, whose opcode handlers can be replaced one by one (typed Any: it
#: is not in typeshed)
_PyUnpickler: Any = pickle._Unpickler
_MAX_DEPTH = 64
_MAX_ITEMS = 10_000_000


def _refuse(message: str) -> ScanFindingError:
    return ScanFindingError(
        f"load-time check refused the pickle: {message}",
        hint="the restricted unpickler met something the scan did not flag: report this file",
    )


class _Guard:
    """The state and checks shared by both unpickler flavours (plain and joblib)."""

    allowlist: Allowlist
    #: id -> (object, rules, module, name) for every global find_class handed out (the objects
    #: are kept alive here, so their ids stay theirs)
    registry: dict[int, tuple[Any, CallRules, str, str]]
    stack: list[Any]
    proto: int

    def _init_guard(
        self, allowlist: Allowlist, registry: dict[int, tuple[Any, CallRules, str, str]]
    ) -> None:
        self.allowlist = allowlist
        self.registry = registry

    # -- globals ------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        m, n = module, name
        if getattr(self, "proto", 5) < 3:
            if (m, n) in NAME_MAPPING:
                m, n = NAME_MAPPING[(m, n)]
            elif m in IMPORT_MAPPING:
                m = IMPORT_MAPPING[m]
        rules = self.allowlist.rules(m, n)
        if rules is None:
            raise _refuse(f"{m}.{n} is not on the allowlist")
        obj = _PyUnpickler.find_class(self, m, n)
        self.registry[id(obj)] = (obj, rules, m, n)
        return obj

    def _rules_of(self, obj: Any) -> CallRules | None:
        got = self.registry.get(id(obj))
        return got[1] if got is not None and got[0] is obj else None

    # -- inertness ----------------------------------------------------------------------------

    def _callable_in(self, v: Any) -> str | None:
        """A description of the first callable inside ``v`` that is not an inert global."""
        seen: set[int] = set()
        todo: list[tuple[Any, int]] = [(v, 0)]
        count = 0
        while todo:
            x, depth = todo.pop()
            t = type(x)
            if t in _ATOMS:
                continue
            count += 1
            if count > _MAX_ITEMS or depth > _MAX_DEPTH:
                return "<arguments too large or too deeply nested to judge>"
            rules = self._rules_of(x)
            if rules is not None:
                if rules.kind != "value":
                    return f"the {rules.kind} {rules.qualname}"
                continue
            if id(x) in seen:
                continue
            seen.add(id(x))
            if t in (tuple, list, set, frozenset):
                todo.extend((y, depth + 1) for y in x)
            elif isinstance(x, dict):
                todo.extend((k, depth + 1) for k in x)
                todo.extend((y, depth + 1) for y in x.values())
                factory = getattr(x, "default_factory", None)
                if factory is not None:
                    todo.append((factory, depth + 1))
            elif isinstance(x, _CALLABLE_TYPES):
                return f"{t.__name__} {getattr(x, '__qualname__', '')!s}".strip()
            elif callable(x):
                return f"a callable {t.__module__}.{t.__qualname__} object"
            elif _is_object_array(x):
                todo.extend((y, depth + 1) for y in x.flat)
        return None

    def _check_call(self, func: Any, args: Any, kwargs: Any, opcode: str) -> CallRules:
        rules = self._rules_of(func)
        if rules is None:
            raise _refuse(
                f"{opcode} calls {type(func).__name__} {getattr(func, '__qualname__', '')} "
                "that is not an allowlisted global (a computed callable)"
            )
        qual = rules.qualname
        if rules.kind == "value":
            raise _refuse(f"{opcode} calls {qual}, a constant, not a callable")
        if not isinstance(args, tuple):
            bad = self._callable_in(args)
            if bad or rules.required_class_args or rules.arg_choices:
                raise _refuse(f"the arguments of {qual} are not a plain tuple of inert values")
            args = tuple(args)
        for i, a in enumerate(args):
            ar = self._rules_of(a)
            if ar is not None and ar.kind != "value":
                if ar.kind == "class" and i in rules.class_args:
                    continue
                if ar.kind == "function" and ar.qualname in rules.functions_at(i):
                    continue
                raise _refuse(
                    f"argument {i} of {qual} is the {ar.kind} {ar.qualname}, which {qual} is "
                    "not declared to take"
                )
            if i in rules.required_class_args:
                raise _refuse(f"argument {i} of {qual} is not an allowlisted class")
            bad = self._callable_in(a)
            if bad:
                raise _refuse(f"argument {i} of {qual} holds {bad}")
        for i in rules.required_class_args:
            if i >= len(args):
                raise _refuse(f"argument {i} of {qual} is missing (an allowlisted class)")
        for i, choices in rules.arg_choices:
            if i >= len(args) or not isinstance(args[i], str) or args[i] not in choices:
                raise _refuse(f"argument {i} of {qual} is not one of {list(choices)}")
        if kwargs:
            bad = self._callable_in(kwargs)
            if bad:
                raise _refuse(f"a keyword argument of {qual} holds {bad}")
        return rules

    def _attribute(self, args: Any) -> Any:
        """getattr(<allowlisted global>, "<attr>") only when "<global>.<attr>" is listed too."""
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], str):
            got = self.registry.get(id(args[0]))
            if got is not None and got[0] is args[0]:
                _, _, module, name = got
                return self.find_class(module, f"{name}.{args[1]}")
        raise _refuse("getattr is allowed only on an allowlisted global and a constant name")

    def _call(self, func: Any, args: Any, kwargs: dict[str, Any], opcode: str) -> Any:
        rules = self._rules_of(func)
        if rules is not None and rules.attribute:
            return self._attribute(args)
        self._check_call(func, args, kwargs, opcode)
        return func(*args, **kwargs)

    def _stored_ok(self, values: Any, opcode: str, target: Any = None) -> None:
        """Values stored as attributes or items may be globals, never other callables; into an
        object other than a plain dict, list or set, not even allowlisted classes or functions
        (the scanner's rule: an object built by a call may index or call what it holds)."""
        plain = target is None or type(target) in (dict, list, set)
        for v in values:
            if type(v) in _ATOMS:
                continue
            rules = self._rules_of(v)
            if rules is not None:
                if not plain and rules.kind != "value":
                    raise _refuse(f"{opcode} stores the {rules.kind} {rules.qualname} into a "
                                  f"{type(target).__name__} object")
                continue
            if isinstance(v, _CALLABLE_TYPES):
                raise _refuse(f"{opcode} stores {type(v).__name__} "
                              f"{getattr(v, '__qualname__', '')} that is not an allowlisted global")

    def _target_ok(self, target: Any, opcode: str) -> None:
        rules = self._rules_of(target)
        if rules is not None:
            raise _refuse(f"{opcode} modifies the global {rules.qualname} itself")

    # -- opcode handlers ----------------------------------------------------------------------

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        stack[-1] = self._call(func, args, {}, "REDUCE")

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._new(cls, args, {}, "NEWOBJ"))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._new(cls, args, kwargs, "NEWOBJ_EX"))

    def _new(self, cls: Any, args: Any, kwargs: Any, opcode: str) -> Any:
        rules = self._check_call(cls, args, kwargs, opcode)
        if rules.kind != "class" or not isinstance(cls, type):
            raise _refuse(f"{opcode} on {rules.qualname}, which is not an allowlisted class")
        return cls.__new__(cls, *args, **(kwargs or {}))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        # OBJ and INST
        self._check_call(klass, tuple(args), {}, "OBJ/INST")
        _PyUnpickler._instantiate(self, klass, args)

    def _check_build(self) -> None:
        state = self.stack[-1]
        inst = self.stack[-2]
        self._target_ok(inst, "BUILD")
        try:
            own = vars(inst)
        except TypeError:
            own = {}
        if "__setstate__" in own:
            raise _refuse("BUILD on an object that carries its own __setstate__ attribute")
        parts: tuple[Any, ...] = (
            state if isinstance(state, tuple) and len(state) == 2 else (state,)
        )
        # Checked even when the class has its own __setstate__: many (sklearn's BaseEstimator)
        # just update __dict__, and an instance __setstate__ shadows the class's next time.
        for part in parts:
            if not isinstance(part, dict):
                continue
            for k in part:
                if not isinstance(k, str):
                    continue
                if k.startswith("__") and k.endswith("__"):
                    raise _refuse(f"BUILD sets the dunder attribute {k}")
            self._stored_ok(part.values(), "BUILD")

    def load_build(self) -> None:
        self._check_build()
        _PyUnpickler.load_build(self)

    def load_append(self) -> None:
        self._target_ok(self.stack[-2], "APPEND")
        self._stored_ok(self.stack[-1:], "APPEND", self.stack[-2])
        _PyUnpickler.load_append(self)

    def _marked(self, opcode: str) -> None:
        """APPENDS/SETITEMS/ADDITEMS: the items are above the mark, the target just below it."""
        target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        self._target_ok(target, opcode)
        self._stored_ok(self.stack, opcode, target)

    def load_appends(self) -> None:
        self._marked("APPENDS")
        _PyUnpickler.load_appends(self)

    def load_setitem(self) -> None:
        self._target_ok(self.stack[-3], "SETITEM")
        self._stored_ok(self.stack[-2:], "SETITEM", self.stack[-3])
        _PyUnpickler.load_setitem(self)

    def load_setitems(self) -> None:
        self._marked("SETITEMS")
        _PyUnpickler.load_setitems(self)

    def load_additems(self) -> None:
        self._marked("ADDITEMS")
        _PyUnpickler.load_additems(self)

    metastack: list[list[Any]]


def _is_object_array(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return bool(getattr(dtype, "hasobject", False)) and hasattr(x, "flat")


def _dispatch(base: dict[int, Any], cls: type) -> dict[int, Any]:
    d = dict(base)
    for op, name in [
        (pickle.REDUCE, "load_reduce"), (pickle.NEWOBJ, "load_newobj"),
        (pickle.NEWOBJ_EX, "load_newobj_ex"), (pickle.BUILD, "load_build"),
        (pickle.APPEND, "load_append"), (pickle.APPENDS, "load_appends"),
        (pickle.SETITEM, "load_setitem"), (pickle.SETITEMS, "load_setitems"),
        (pickle.ADDITEMS, "load_additems"),
    ]:
        d[op[0]] = getattr(cls, name)
    return d


class RestrictedUnpickler(_Guard, _PyUnpickler):
    """A pure-Python unpickler that enforces the allowlist and its argument rules at run time."""

    def __init__(
        self,
        fh: IO[bytes],
        allowlist: Allowlist,
        registry: dict[int, tuple[Any, CallRules, str, str]] | None = None,
    ) -> None:
        _PyUnpickler.__init__(self, fh)
        self._init_guard(allowlist, registry if registry is not None else {})


RestrictedUnpickler.dispatch = _dispatch(
    _PyUnpickler.dispatch, RestrictedUnpickler
)


def joblib_unpickler(
    filename: str, fobj: IO[bytes], allowlist: Allowlist
) -> _PyUnpickler:
    """joblib's ``NumpyUnpickler`` with the same checks, reading object arrays restrictedly."""
    from joblib import numpy_pickle

    class _JoblibRestricted(_Guard, numpy_pickle.NumpyUnpickler):
        def load_build(self) -> None:
            self._check_build()
            _PyUnpickler.load_build(self)
            top = self.stack[-1]
            if isinstance(top, numpy_pickle.NDArrayWrapper):
                raise _refuse("joblib < 0.10 array wrappers are not supported")
            if isinstance(top, numpy_pickle.NumpyArrayWrapper):
                self.stack.pop()
                import numpy as np

                if top.subclass is not np.ndarray:
                    raise _refuse(f"joblib array of subclass {top.subclass!r}")
                if top.dtype.hasobject:
                    # joblib itself would read this nested stream with a plain Unpickler.
                    inner = RestrictedUnpickler(self.file_handle, self.allowlist, self.registry)
                    array = inner.load()
                else:
                    array = top.read(self, self.ensure_native_byte_order)
                self.stack.append(array)

    _JoblibRestricted.dispatch = _dispatch(
        numpy_pickle.NumpyUnpickler.dispatch, _JoblibRestricted
    )
    u = _JoblibRestricted(filename, fobj, True)
    u._init_guard(allowlist, {})
    return u
