"""``userdata.get``: Colab's secrets, from the JSON file ``COLAB_STANDIN_SECRETS``:
``{"NAME": {"value": "...", "granted": true}}`` (granted: whether this notebook may read it)."""

import json
import os
from pathlib import Path


class SecretNotFoundError(Exception):
    def __init__(self, key):
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    def __init__(self, key):
        super().__init__(f"Notebook does not have access to secret {key}")


def get(key):
    path = os.environ.get("COLAB_STANDIN_SECRETS")
    secrets = json.loads(Path(path).read_text()) if path else {}
    if key not in secrets:
        raise SecretNotFoundError(key)
    if not secrets[key]["granted"]:
        raise NotebookAccessError(key)
    return secrets[key]["value"]
