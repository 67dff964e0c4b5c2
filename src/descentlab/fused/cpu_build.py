"""Build and load the CPU kernel library (``cpu_kernels.c``) once per machine.

The C source ships with the package. At first use it is compiled with the system C compiler
(``$CC`` or ``cc``; ``-O3 -march=native -fopenmp``, no fast-math: every operation stays IEEE, and
``-ffp-contract=off`` keeps vector body and scalar tail bit-identical, so results never depend on the
thread count) into a cache folder keyed by the source, the flags, the compiler and the CPU. A build
takes ≈ 4 s; later processes load the cached file in milliseconds. Where no compiler is found or the
build fails, :func:`library` returns ``None`` after one warning and descentlab steps with the
reference rules.

The native gatherer (``cpu_gather.cpp``, see cpu_step.py) is optional: a CPython extension compiled with
the system C++ compiler (``$CXX`` or ``c++``) against the running torch and Python, in a background thread
(:func:`gather_module`), ≈ 10–15 s, cached beside the kernels and keyed by its source, the compiler, torch
and Python. Where it cannot be built, nothing is said and the Python loop gathers.

Cache folder: ``$DESCENTLAB_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/descentlab/kernels``, else
``~/.cache/descentlab/kernels``. The OpenMP runtime is the one torch already loaded (same soname),
so the kernels and torch share one thread pool.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from descentlab.fused.abi import CPU_KERNELS, GATHER_ABI_VERSION, KERNEL_ABI_VERSION

SOURCES = ("cpu_kernels.c", "cpu_kernels.h")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared",
         "-std=gnu11", f"-DDL_ABI_VERSION={KERNEL_ABI_VERSION}")
#: The kernels the library exports (``dl_<kernel>_<variant>``), from the one table in :mod:`descentlab.fused.abi`.
KERNELS = tuple(dict.fromkeys(abi.kernel for abi in CPU_KERNELS.values()))
ABI_VERSION = KERNEL_ABI_VERSION
#: Kernel variants: (parameter dtype)(state dtype) — float32, float64, and bf16 / fp16 with float32 state.
VARIANTS = ("f32", "f64", "bf16f32", "f16f32")

_lock = threading.Lock()
_loaded: ctypes.CDLL | None = None
_failed: str | None = None


def cache_dir() -> Path:
    """Where built libraries are kept (see the module docstring)."""
    if os.environ.get("DESCENTLAB_KERNEL_CACHE"):
        return Path(os.environ["DESCENTLAB_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "descentlab" / "kernels"


def _command_from_env(variable: str, defaults: tuple[str, ...], what: str) -> list[str]:
    """The compiler command in ``$variable`` — split like a shell would, so ``ccache gcc`` works; its program
    must exist (a wrong setting is reported, not silently replaced) — else the first of ``defaults`` found."""
    if os.environ.get(variable):
        words = shlex.split(os.environ[variable])
        found = shutil.which(words[0]) if words else None
        if found is None:
            raise RuntimeError(f"${variable}={os.environ[variable]!r} is not an executable compiler")
        return [found, *words[1:]]
    for name in defaults:
        found = shutil.which(name)
        if found is not None:
            return [found]
    raise RuntimeError(f"no {what} compiler found (install {defaults[-1]}, or set ${variable})")


def _compiler() -> list[str]:
    """The C compiler command: ``$CC`` if set, else cc or gcc."""
    return _command_from_env("CC", ("cc", "gcc"), "C")


def _cpu_signature() -> str:
    """The CPU model and feature flags: ``-march=native`` code must not move to another CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(lines)))


def _library_path(compiler: list[str]) -> Path:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (" ".join(FLAGS), version, platform.machine(), _cpu_signature()):
        digest.update(part.encode())
    return cache_dir() / f"libdescentlab_kernels_{digest.hexdigest()[:16]}.so"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _check_private(folder: Path) -> None:
    """Refuse a folder that is not this user's own or that others can write into: a predictable name in a
    shared temp dir could have been created by someone else, with a library of theirs in it."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise RuntimeError(f"{folder} is not a private folder of this user; the kernels are not loaded from it "
                           "(set $DESCENTLAB_KERNEL_CACHE to a folder of yours)")


def build(compiler: list[str] | None = None) -> Path:
    """Compile the kernels (if not cached) and return the library's path; raise on failure.
    An unwritable cache folder (a read-only home) falls back to a per-user folder in the temp dir."""
    compiler = compiler or _compiler()
    source = str(Path(__file__).parent / "cpu_kernels.c")
    return _build_cached(_library_path(compiler), compiler, lambda output: [*compiler, *FLAGS, "-o", output, source])


def _build_cached(target: Path, compiler: list[str], command: Callable[[str], list[str]]) -> Path:
    """``target`` if it exists (or its twin in the per-user temp folder when the cache folder is not writable),
    else the output of ``command(temporary path)``, renamed into place once complete."""
    if target.exists():
        return target
    if not _writable(target.parent):
        target = Path(tempfile.gettempdir()) / f"descentlab-kernels-{os.getuid()}" / target.name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(target.parent)
        if target.exists():
            return target
    _remove_stale_temporaries(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(command(tmp), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(compiler)} failed:\n{result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process sees the old state or the whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _remove_stale_temporaries(folder: Path, age_s: float = 3600.0) -> None:
    """Delete half-written libraries older than an hour: a build in a background thread dies with its process."""
    for path in folder.glob("*.tmp.so"):
        try:
            if time.time() - path.stat().st_mtime > age_s:
                path.unlink()
        except OSError:
            pass


def _declare(lib: ctypes.CDLL) -> None:
    address = ctypes.c_void_p  # arrays are passed as addresses of Python array.array buffers
    for name in KERNELS:
        for suffix in VARIANTS:
            fn = getattr(lib, f"dl_{name}_{suffix}")
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_int64, address, address, address, address, address, address, address, address,
                           ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_double, ctypes.c_int]


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first use; ``None`` (after one warning) if that fails."""
    global _loaded, _failed
    if _loaded is not None or _failed is not None:
        return _loaded
    with _lock:
        if _loaded is None and _failed is None:
            try:
                import torch  # noqa: F401  (loads the OpenMP runtime the kernels link against)

                lib = ctypes.CDLL(str(build()))
                if lib.dl_abi_version() != ABI_VERSION:
                    raise RuntimeError(f"kernel library ABI {lib.dl_abi_version()}, expected {ABI_VERSION}")
                _declare(lib)
                _loaded = lib
            except Exception as err:  # no compiler, a failed build, an unloadable file
                _failed = f"{type(err).__name__}: {err}"
                warnings.warn(f"descentlab: CPU fused kernels unavailable ({_failed}); using the reference rules",
                              stacklevel=2)
    return _loaded


def unavailable_reason() -> str | None:
    """Why :func:`library` returned ``None`` (``None`` if it has not failed)."""
    return _failed


# ----------------------------------------------------------------------------------------------------------------
# The native gatherer (cpu_gather.cpp): optional, built in the background, used once ready.

GATHER_SOURCE = "cpu_gather.cpp"
GATHER_MODULE = "_descentlab_gather"
GATHER_FLAGS = ("-O2", "-fPIC", "-shared", "-std=c++17", "-w", f"-DDL_GATHER_ABI_VERSION={GATHER_ABI_VERSION}")

_gather_loaded: Any = None
_gather_failed: str | None = None
_gather_thread: threading.Thread | None = None
_gather_built: Path | None = None
_gather_probed = False


def _cxx_compiler() -> list[str]:
    """The C++ compiler command: ``$CXX`` if set, else c++ or g++."""
    return _command_from_env("CXX", ("c++", "g++"), "C++")


def _gather_command(compiler: list[str], output: str) -> list[str]:
    """The compile-and-link command of the gatherer: against the running torch's headers and libraries and the
    running Python's headers, with torch's C++ ABI, the kernels of cpu_kernels.c resolved through addresses."""
    import sysconfig

    import torch
    from torch.utils import cpp_extension

    torch_lib = str(Path(torch.__file__).parent / "lib")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{path}" for path in cpp_extension.include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    return [*compiler, *GATHER_FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes,
            str(Path(__file__).parent / GATHER_SOURCE), "-o", output,
            f"-L{torch_lib}", "-ltorch_python", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_lib}"]


def _gather_path(compiler: list[str]) -> Path:
    import sys
    import sysconfig

    import torch

    digest = hashlib.sha256((Path(__file__).parent / GATHER_SOURCE).read_bytes())
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (" ".join(GATHER_FLAGS), version, platform.machine(), torch.__version__, torch.__file__,
                 sys.version, str(sysconfig.get_config_var("EXT_SUFFIX"))):
        digest.update(part.encode())
    return cache_dir() / f"{GATHER_MODULE}_{digest.hexdigest()[:16]}.so"


def build_gather(compiler: list[str] | None = None) -> Path:
    """Compile the gatherer (if not cached) and return its path; raise on failure (≈ 10–15 s on 2 cores)."""
    compiler = compiler or _cxx_compiler()
    return _build_cached(_gather_path(compiler), compiler, lambda output: _gather_command(compiler, output))


def _build_gather_in_background() -> None:
    global _gather_built, _gather_failed
    try:
        _gather_built = build_gather()
    except Exception as err:  # no C++ compiler, no Python or torch headers, a failed build
        _gather_failed = f"{type(err).__name__}: {err}"


def gather_module(start: bool = True, wait: bool = False) -> Any:
    """The native gatherer module, or ``None`` while it is being built or if it cannot be built
    (:func:`gather_unavailable_reason` says why; the Python loop of cpu_step.py is then used, with identical
    results). A gatherer already built on this machine is loaded at the first call, whatever ``start``.
    ``start``: begin the build (in a background thread, so no step waits for the compiler) if it has not begun;
    ``wait=True`` blocks until the build has finished."""
    global _gather_thread, _gather_built, _gather_probed
    if _gather_loaded is not None or _gather_failed is not None:
        return _gather_loaded
    if _gather_thread is None and not (start or wait):
        if _gather_probed:
            return None
        _gather_probed = True
        cached = _cached_gather()
        if cached is None:
            return None
        with _lock:
            if _gather_thread is None and _gather_built is None:
                _gather_built = cached
        return _load_gather()
    with _lock:
        if _gather_thread is None and _gather_built is None:
            _gather_thread = threading.Thread(target=_build_gather_in_background, name="descentlab-gather-build",
                                              daemon=True)
            _gather_thread.start()
    if wait and _gather_thread is not None:
        _gather_thread.join()
    if _gather_thread is not None and _gather_thread.is_alive():
        return None
    return _load_gather()


def _cached_gather() -> Path | None:
    """The gatherer built earlier on this machine for this torch and Python, if there is one (≈ 2 ms: the
    compiler's ``--version`` is part of the key)."""
    try:
        path = _gather_path(_cxx_compiler())
    except Exception:  # no C++ compiler: nothing can have been built with it
        return None
    return path if path.exists() else None


def _load_gather() -> Any:
    """Import the built gatherer (once); an unloadable file is recorded as the reason, not raised."""
    global _gather_loaded, _gather_failed
    with _lock:
        if _gather_loaded is None and _gather_failed is None and _gather_built is not None:
            try:
                import importlib.util

                spec = importlib.util.spec_from_file_location(GATHER_MODULE, _gather_built)
                if spec is None or spec.loader is None:
                    raise ImportError(f"{_gather_built} is not a loadable extension module")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                if module.abi_version() != GATHER_ABI_VERSION:
                    raise RuntimeError(f"gatherer ABI {module.abi_version()}, expected {GATHER_ABI_VERSION}")
                _gather_loaded = module
            except Exception as err:  # an unloadable file (a torch upgraded in place, …)
                _gather_failed = f"{type(err).__name__}: {err}"
    return _gather_loaded


def gather_unavailable_reason() -> str | None:
    """Why :func:`gather_module` returned ``None`` for good (``None`` if it has not failed)."""
    return _gather_failed
