"""Methods from outside kdstudy: a package's ``kdstudy.methods`` entry point, or a local file (``--method-file``).

Either registers a :class:`~.base.Method` subclass with ``@register_method``, as the built-in methods do. A file is
trusted code (it is imported, as a plugin package is); its content is pinned when the run is specified
(``kd.method_sha256``), so a run never trains with a file changed since it was queued. A file that fails to import,
or registers nothing, is one line (exit 2).
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ... import method_catalog as catalog
from ...errors import UsageError
from .base import METHODS, Method, register_method

_LOADED: dict[str, list[str]] = {}  # a file's sha256 -> the methods it registered (a copy elsewhere is the same code)


def load_method_file(path: str, sha256: str | None = None) -> list[str]:
    """Import a method file once per content; the names of the methods it registered."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"--method-file {path} cannot be read ({exc.strerror or exc})", field="method_file") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise UsageError(f"--method-file {path} has changed since the run was specified (its SHA-256 was "
                         f"{sha256[:12]}..., now {digest[:12]}...); specify the run again", field="method_file")
    if digest in _LOADED:
        return _LOADED[digest]
    before = set(METHODS)
    name = f"kdstudy_method_file_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise UsageError(f"--method-file {path} is not a Python file", field="method_file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever a user's file raises is said in one line
        sys.modules.pop(name, None)
        for added in set(METHODS) - before:
            METHODS.pop(added)
        raise UsageError(f"--method-file {path} failed to import: {type(exc).__name__}: {exc}",
                         field="method_file") from None
    added = sorted(set(METHODS) - before)
    if not added:
        raise UsageError(f"--method-file {path} registers no method (decorate a kdengine.training.methods.Method "
                         "subclass with @register_method)", field="method_file")
    _LOADED[digest] = added
    return added


def load_entry_point(name: str) -> None:
    """Load the ``kdstudy.methods`` entry point ``name`` (it registers its method, or is the class itself)."""
    for ep in entry_points(group=catalog.ENTRY_POINT_GROUP, name=name):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"method {name} (entry point {ep.value}) failed to import: {type(exc).__name__}: {exc}",
                             field="method") from None
        if name not in METHODS and isinstance(obj, type) and issubclass(obj, Method):
            register_method(obj)
        if name in METHODS:
            return
    raise UsageError(f"method {name}: no kdstudy.methods entry point registers it", field="method")


def method_class(kd) -> type[Method]:
    """The class of the method a KD config names: built in, from its method file, or from an entry point."""
    if kd.method not in METHODS:
        if kd.method_file:
            names = load_method_file(kd.method_file, kd.method_sha256)
            if kd.method not in METHODS:
                raise UsageError(f"--method-file {kd.method_file} registers {', '.join(names)}, not '{kd.method}' "
                                 f"(pass --method {names[0]})", field="method")
        else:
            load_entry_point(kd.method)
    return METHODS[kd.method]
