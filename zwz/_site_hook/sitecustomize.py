"""Installs zwz's torchvision compatibility layer in child Python processes (e.g. vLLM workers).

zwz.compat puts this folder on PYTHONPATH and Python imports ``sitecustomize`` at start-up. Importing
transformers here would cost seconds in every child process, so this only registers an import hook that
applies the layer right after the child itself imports transformers. Another ``sitecustomize`` further
down the path still runs afterwards.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


class _AfterTransformersImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding us again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_install(module):
            exec_module(module)
            try:
                from zwz import compat
            except ImportError:  # zwz is not importable in this interpreter: nothing to patch
                return
            compat.install()

        spec.loader.exec_module = exec_then_install
        return spec


if "transformers" not in sys.modules:
    sys.meta_path.insert(0, _AfterTransformersImport())

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
