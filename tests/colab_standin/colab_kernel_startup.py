"""What Colab's kernel has done before the first cell runs (tests/test_colab_runtime.py): ``google.colab``, numpy,
pandas and matplotlib imported. Then it records the installed version of every distribution one of whose
modules is imported so far, in the JSON file ``COLAB_STANDIN_IMPORTED`` names: Colab asks for a restart when a pip
install changes one of these, and the test checks which the set-up cell changed."""

import importlib.metadata
import json
import os
import sys

import google.colab  # noqa: F401
import matplotlib  # noqa: F401
import numpy  # noqa: F401
import pandas  # noqa: F401


def _module(path) -> str:
    parts = list(path.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


_loaded = set(sys.modules)
with open(os.environ["COLAB_STANDIN_IMPORTED"], "w", encoding="utf-8") as _file:
    json.dump({d.metadata["Name"]: d.version for d in importlib.metadata.distributions()  # a module of it is loaded
               if any(f.suffix == ".py" and _module(f) in _loaded for f in d.files or [])}, _file)
