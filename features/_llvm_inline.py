"""Let LLVM inline chosen kernels into the kernels that call them (``features._jit.inlined``).

numba's ``inline="always"`` inlines a function into its caller in numba's own IR, before
typing: every later front-end pass (liveness, SSA, typing, lowering) then works on the caller
whole, and those cost more than linearly in a function's size. For ``_txn`` and ``_call``, each
hundreds of lines of inlined helpers, that made ``_process`` most of the first start's compile.
Compiled as kernels of their own, the front end sees three smaller functions; but a plain call
between kernels passes every array as its members (a dozen words each) and keeps LLVM from
optimising across it, which measured a few percent on the hot path.

A kernel's LLVM module is linked into each caller's module, which is then optimised whole. Here
its functions get LLVM's ``alwaysinline`` attribute in the copy that is linked, so LLVM inlines
them into the caller there: the machine code of ``_process`` is again one function, while
numba's front end still compiled three. Only the copy for linking is marked (numba's own
``_get_module_for_linking``, wrapped), so the kernel called from Python is unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["APPLIED", "mark"]

_PREFIXES: set[str] = set()  # mangled-name prefixes of the kernels LLVM inlines into callers

# numba internals: where they are not as this module knows them (another numba release), the
# kernels stay separate functions (correct, a few percent slower), never a failed import
_library: Any = None
_original: Any = None
try:
    from numba.core import codegen as _codegen

    _library = _codegen.CPUCodeLibrary
    _original = _library._get_module_for_linking
except (ImportError, AttributeError):  # pragma: no cover - depends on the numba release
    _library = _original = None


def _prefix(qualified: str) -> str:
    """numba's (Itanium) mangled name of ``module.function`` up to its argument types."""
    return "_ZN" + "".join(f"{len(part)}{part}" for part in qualified.split("."))


def mark(dispatcher: Any) -> Any:
    """Have LLVM inline ``dispatcher``'s compiled function wherever another kernel calls it."""
    f = dispatcher.py_func
    _PREFIXES.add(_prefix(f"{f.__module__}.{f.__qualname__}"))
    return dispatcher


def _get_module_for_linking(self: Any) -> Any:
    mod = _original(self)
    try:
        for fn in mod.functions:
            name = fn.name
            if fn.is_declaration or any(b"alwaysinline" in a for a in fn.attributes):
                continue
            if any(name.startswith(p) and name[len(p):len(p) + 1] in ("B", "E")
                   for p in _PREFIXES):
                fn.add_function_attribute("alwaysinline")
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - another llvmlite
        pass  # the module as numba made it: linked as a call, not inlined
    return mod


def _apply() -> bool:
    if _library is None or _original is None:  # pragma: no cover
        return False
    if getattr(_library._get_module_for_linking, "__wrapped_by__", None) == __name__:
        return True
    _get_module_for_linking.__wrapped_by__ = __name__  # type: ignore[attr-defined]
    _library._get_module_for_linking = _get_module_for_linking
    return True


APPLIED = _apply()
