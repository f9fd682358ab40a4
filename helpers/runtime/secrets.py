"""Whether this is Colab, and Colab's secrets: the one place that asks ``google.colab`` for a key or token.

Everything that looks a key up (the Hub's token, the MDC's API key) comes here, so this module depends on
nothing of ours but the learner's error type.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers.runtime.errors import CourseError


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules or ("COLAB_RELEASE_TAG" in os.environ and Path("/content").is_dir())


class SecretNotGranted(CourseError):
    """A Colab secret exists but this notebook was not given access to it; the message says how to grant it."""


def colab_secret(name: str) -> str | None:
    """The Colab secret ``name`` (never printed); ``None`` outside Colab or when there is no such secret.

    Raises ``SecretNotGranted`` when the secret exists but this notebook may not read it: Colab asks once
    per notebook, and a learner who closed that prompt would otherwise read "no key" and make another.
    """
    if not in_colab():
        return None
    try:
        # Only Colab has these modules (a test installs a stand-in first), so they are imported when asked for.
        from google.colab import userdata  # type: ignore[import-not-found]
        from google.colab.errors import Error as ColabError  # type: ignore[import-not-found]
    except ImportError:  # a Colab-like runtime without Colab's modules
        return None
    try:
        return userdata.get(name) or None
    except userdata.NotebookAccessError as error:
        raise SecretNotGranted(
            f"The Colab secret {name} exists but this notebook may not read it: open the key icon in the left bar, "
            f"switch on 'Notebook access' for {name}, then run this cell again."
        ) from error
    except ColabError:  # no such secret (SecretNotFoundError), or Colab did not answer in time
        return None
