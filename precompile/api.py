"""The public API: ``cached`` (decorator), ``save``, ``load``, ``flush``, ``stats``.

The warm path, one module a step: a first call records nothing until it has looked for a
package (``cached_function``): the recorder (``recorder``) holds what Dynamo compiles,
``saving`` serializes it (``manifest``) into the store, and a later process's first call
fetches it (``loading``, ``single_flight``), verifies it and installs it (``install``).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import torch

from cache_backends.local import write_atomically

from . import _torch, settings
from .format import envelope as format
from .package import keys
from .read import read_path
from .record import saving
from .cached_function import CachedFunction
from .counters import STATS
from .errors import PackageError, StoreError
from .read.loading import verify
from .identity.main_function import main_code
from .policy import Policy, default_store, resolve_signing_key

# --------------------------------------------------------------- public API


def cached(fn: Any = None, *, cache_dir: Any = None, backend: Any = "inductor",
           store: Any = None, strict: bool | None = None, eager_backward: bool = True,
           single_flight: bool = True, wait_timeout: float | None = None,
           signing_key: str | bytes | None = None, **compile_kwargs: Any) -> Any:
    """``torch.compile`` with a warm-start cache.

    Use as ``@precompile.cached``, ``@precompile.cached(cache_dir=...)``, or on what
    ``torch.compile`` returned (its backend and options are kept). ``compile_kwargs`` are
    ``torch.compile``'s (``mode``, ``options``, ``dynamic``, ``fullgraph``).
    ``strict=True`` (or ``PRECOMPILE_STRICT=1``) raises on a miss instead of compiling.
    ``PRECOMPILE_DISABLE=1`` makes this plain ``torch.compile``.
    ``single_flight`` (default on): when several processes miss the same package at once,
    one compiles and saves it right away, the others wait up to ``wait_timeout`` seconds
    (``$PRECOMPILE_WAIT_TIMEOUT``, default 600) and load it; a waiter whose leader dies
    takes over. ``signing_key`` (or ``$PRECOMPILE_SIGNING_KEY``): sign packages written and
    refuse unsigned ones.
    """
    if fn is None:
        return functools.partial(
            cached, cache_dir=cache_dir, backend=backend, store=store, strict=strict,
            eager_backward=eager_backward, single_flight=single_flight,
            wait_timeout=wait_timeout, signing_key=signing_key, **compile_kwargs)
    made = getattr(fn, "_precompile_auto", None)  # torch.compile's, under PRECOMPILE_AUTO
    if made is not None:  # cache what torch.compile was given, once, with its options
        fn, backend = made.model, made.backend
        compile_kwargs = {**made.compile_kwargs, **compile_kwargs}
    if settings.or_default(lambda: settings.flag(settings.DISABLE), False, strict=False):
        return fn if _torch.unwrap_compiled(fn) is not None else torch.compile(
            fn, backend=backend, **compile_kwargs)
    policy = Policy.resolve(cache_dir=cache_dir, store=store, strict=strict,
                            eager_backward=eager_backward, single_flight=single_flight,
                            wait_timeout=wait_timeout, signing_key=signing_key)
    return _wrap(fn, backend, compile_kwargs, policy)


def _wrap(fn: Any, backend: Any, compile_kwargs: dict[str, Any], policy: Policy,
          preloaded: format.Envelope | None = None) -> Any:
    """Build the CachedFunction machinery for ``fn`` (possibly what torch.compile returned)."""
    unknown = set(compile_kwargs) - {"mode", "options", "dynamic", "fullgraph"}
    if unknown:
        raise TypeError(f"precompile.cached got unexpected arguments {sorted(unknown)}")
    parts = _torch.unwrap_compiled(fn)
    if parts is not None:
        target, backend_obj = parts.original, parts.backend_obj
        fullgraph = compile_kwargs.get("fullgraph", parts.fullgraph)
        dynamic = compile_kwargs.get("dynamic", parts.dynamic)
    else:
        target = fn
        dynamic = compile_kwargs.get("dynamic")
        fullgraph = bool(compile_kwargs.get("fullgraph", False))
        backend_obj = _torch.make_backend(backend, compile_kwargs.get("mode"),
                                          compile_kwargs.get("options"), dynamic)
    impl = CachedFunction(target, backend_obj=backend_obj, fullgraph=fullgraph,
                          dynamic=dynamic, policy=policy, preloaded=preloaded)
    return _front(impl)


def _front(impl: CachedFunction) -> Any:
    """What the user holds: an nn.Module for modules, a function otherwise."""
    compiled = impl.compiled(impl.target)
    if isinstance(impl.target, torch.nn.Module):
        inner_forward = compiled.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            return impl.call(inner_forward, args, kwargs)

        compiled.forward = forward
        # On the OptimizedModule itself, not (through its __setattr__) on the user's module:
        # copy.deepcopy / pickle / state_dict of the user's module then never meet it, and a
        # copy is what plain torch.compile's copy is (OptimizedModule.__reduce__).
        object.__setattr__(compiled, "_precompile", impl)
        return compiled

    @functools.wraps(impl.target if callable(impl.target) else compiled)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return impl.call(compiled, args, kwargs)

    wrapper._precompile = impl  # type: ignore[attr-defined]
    return wrapper


def is_cached(obj: Any) -> bool:
    """Whether ``obj`` is what ``precompile.cached`` or ``precompile.load`` returned."""
    return isinstance(getattr(obj, "_precompile", None), CachedFunction)


def _impl_of(obj: Any) -> CachedFunction:
    impl = getattr(obj, "_precompile", None)
    if not isinstance(impl, CachedFunction):
        raise PackageError("precompile.save needs what precompile.cached or precompile.load "
                           "returned (it records compiles); wrap your function with "
                           "precompile.cached first")
    return impl


def save(compiled: Any, path: str | os.PathLike[str]) -> str:
    """Write one self-contained package file with every frame ``compiled`` compiled so far."""
    impl = _impl_of(compiled)
    if not impl.package.key:
        raise PackageError("nothing compiled yet: call the function at least once before "
                           "precompile.save")
    data = impl.envelope_bytes()
    path = os.fspath(path)
    try:
        write_atomically(os.path.dirname(os.path.abspath(path)), path, data, mode=0o644)
    except OSError as e:
        raise StoreError(f"cannot write package file {path}: {e.strerror}") from e
    return path


def load(fn_or_module: Any, path: str | os.PathLike[str], *, backend: Any = None,
         strict: bool | None = None, cache_dir: Any = None, store: Any = None,
         signing_key: str | bytes | None = None, **compile_kwargs: Any) -> Any:
    """A callable for ``fn_or_module`` whose first call runs the package file's code.

    The file gets a cache's checks before a byte of it is decoded (``read_path.load_file``):
    a regular file of at most 1 GiB, not a symlink, that neither it nor its directory could
    have been written by another user (``PRECOMPILE_TRUST_SHARED_CACHE=1`` opts out), then
    checksum and signature. Raises StoreError for a file refused so, FormatError/
    IntegrityError for a bad file, IncompatibleError for another python or torch,
    SourceChangedError when the code changed. New compiles are saved only if
    ``cache_dir``/``store`` is given.
    """
    env = read_path.load_file(os.fspath(path), signing_key=resolve_signing_key(signing_key),
                              trust_shared=settings.trust_shared())
    parts = _torch.unwrap_compiled(fn_or_module)
    code, module = main_code(parts.original if parts else fn_or_module)
    verify(env, code, module, {**keys.system_factors(), "code": keys.code_fingerprint(code)})
    if backend is None:
        backend = env.meta.get("backend_name") or "inductor"
    policy = Policy.resolve(cache_dir=cache_dir, store=store, env_store=False, strict=strict,
                            signing_key=signing_key)
    return _wrap(fn_or_module, backend, compile_kwargs, policy, preloaded=env)


def flush(timeout: float | None = None) -> None:
    """Write every package with unsaved compiles now (also runs at exit and on SIGTERM)."""
    saving.flush(timeout)


def stats() -> dict[str, Any]:
    """Counters for this process: hits, misses, saves, bypasses, frames_traced, reasons."""
    return STATS.as_dict()


__all__ = ["cached", "save", "load", "flush", "stats", "verify", "default_store", "Policy",
           "CachedFunction"]
