"""A stand-in for Colab's ``google.colab`` (tests/test_colab_runtime.py): only what the notebooks use, behaving as
Colab's does at the file-system edge. ``drive.mount`` shows a local folder as Drive; ``userdata.get`` reads secrets
from a JSON file and raises Colab's errors for a missing secret or one this notebook may not read."""
