#!/usr/bin/env python3
"""python/ is a pip-installable package: `pip install ./python` into a fresh target imports, and
finds libattnccl.so next to the package; the source tree finds the build tree's library; an
unset ATTNCCL_LIBRARY with no library anywhere fails with a message that names the variable.
Usage: test_package.py <python dir> <libattnccl.so>. Exits 77 when pip/setuptools are missing."""
import os
import shutil
import subprocess
import sys
import tempfile

src, lib = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
try:
    import setuptools  # noqa: F401  (the build backend, used without build isolation)
    import pip  # noqa: F401
    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1):
        import wheel  # noqa: F401  (bdist_wheel before setuptools 70.1)
except ImportError as e:
    print("SKIPPED: %s" % e)
    sys.exit(77)


def py(code, env_extra, path):
    env = {k: v for k, v in os.environ.items() if k not in ("ATTNCCL_LIBRARY", "PYTHONPATH", "BUILD_DIR")}
    env.update(env_extra)
    env["PYTHONPATH"] = path
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")


probe = "import attnccl, attnccl.core as c; print(attnccl.version(), c._lib._name, attnccl.__file__)"
with tempfile.TemporaryDirectory() as d:
    work = os.path.join(d, "src")
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = os.path.join(d, "site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", target, work], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    pkg = os.path.join(target, "attnccl")
    assert os.path.exists(os.path.join(pkg, "torch", "__init__.py")), os.listdir(pkg)

    r = py(probe, {}, target)  # installed, no library anywhere near it
    assert r.returncode != 0 and "ATTNCCL_LIBRARY" in r.stderr, r.stdout + r.stderr

    r = py(probe, {"ATTNCCL_LIBRARY": lib}, target)
    assert r.returncode == 0 and lib in r.stdout, r.stdout + r.stderr

    shutil.copy(lib, os.path.join(pkg, "libattnccl.so"))  # what a wheel carrying the library has
    r = py(probe, {}, target)
    assert r.returncode == 0 and os.path.join(pkg, "libattnccl.so") in r.stdout, r.stdout + r.stderr

# The source checkout: its build tree (BUILD_DIR, relative to the checkout or absolute).
r = py(probe, {"BUILD_DIR": os.path.dirname(lib)}, src)
assert r.returncode == 0 and os.path.dirname(lib) in r.stdout and src in r.stdout, r.stdout + r.stderr
print("1 passed, 0 failed")
