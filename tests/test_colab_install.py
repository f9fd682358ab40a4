"""The set-up cell's install in Colab (helpers.notebook.colab_install): which packages the runtime owns, and the
constraints that keep them. tests/test_colab_runtime.py runs the whole cell in a Colab-shaped runtime."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from helpers.notebook.colab_install import RUNTIME_OWNED, runtime_constraints, runtime_copies, runtime_owned
from tools.constraints import CONSTRAINTS, read


@pytest.fixture
def google_colab(tmp_path, monkeypatch):
    """An installed ``google-colab`` distribution, with the pins of Colab's own (its metadata only)."""
    info = tmp_path / "google_colab-1.0.0.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(
        "Metadata-Version: 2.1\nName: google-colab\nVersion: 1.0.0\n"
        "Requires-Dist: pytest==0.0.1\nRequires-Dist: pluggy==0.0.1\nRequires-Dist: tomlkit; extra == 'docs'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return info


def test_the_runtime_owns_colabs_packages_what_google_colab_pins_and_what_is_imported(google_colab):
    owned = runtime_owned(modules=["yaml", "helpers", "helpers.config"])
    version = importlib.metadata.version
    # Colab's own list, where installed here (torchvision and torchaudio are not)
    assert {"torch", "numpy", "pandas", "matplotlib", "ipython", "ipykernel", "tornado", "requests"} <= set(owned)
    assert owned["torch"] == version("torch") and owned["numpy"] == version("numpy")
    assert not {"torchvision", "torchaudio"} & set(owned)
    # google-colab's requirements, at the versions installed, not at its pins; an extra's requirement is not one
    assert owned["pytest"] == version("pytest") and owned["pluggy"] == version("pluggy")
    assert owned["google-colab"] == "1.0.0"
    # the distribution of an imported module (yaml: PyYAML); this course's own package never counts
    assert owned["pyyaml"] == version("PyYAML")
    assert "whisper-course-helpers" not in owned
    assert "transformers" not in owned and "datasets" not in owned  # not imported here: ours to install


def test_outside_colab_only_the_fixed_list_and_the_imports_count():
    owned = runtime_owned(modules=[])
    assert set(owned) == {name for name in RUNTIME_OWNED if name in owned}
    assert "pytest" not in owned


def test_the_constraints_keep_what_the_runtime_owns_and_pin_the_rest_at_the_tested_versions():
    ours = CONSTRAINTS.read_text(encoding="utf-8")
    colab = {"numpy": "2.1.3", "pandas": "2.2.3", "ipython": "7.34.0", "torch": "2.11.0+cpu", "google-colab": "1.0.0"}
    path_text = runtime_constraints(ours, colab)
    lines = [line for line in path_text.splitlines() if not line.startswith("#")]
    pinned = {}
    for line in lines:
        name, version = line.split("==")
        assert name.lower().replace("_", "-") not in pinned, f"{name} constrained twice"
        pinned[name.lower().replace("_", "-")] = version
    assert {name: pinned[name] for name in colab} == colab  # the runtime's versions, never ours
    tested = read()
    assert tested["numpy"] != "2.1.3" and tested["ipython"] != "7.34.0"  # (ours differ: the case that matters)
    assert {n: v for n, v in pinned.items() if n not in colab} == {n: v for n, v in tested.items() if n not in colab}


# pip's account of the conflict our datasets meets in Colab, as pip writes it (`pip install -c`, ResolutionImpossible)
CONFLICT = """ERROR: Cannot install datasets==5.2.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    datasets 5.2.0 depends on pyarrow>=24.0.0
    The user requested (constraint) pyarrow==18.1.0
"""


def test_where_our_pin_needs_a_loaded_package_to_move_the_runtimes_own_copy_is_kept_instead():
    """Here datasets plays Colab's installed copy: it is kept at the version installed, with the requirements whose
    pin of ours it rejects (fsspec, pinned below its floor), never with those ours satisfy (dill, ...), nor what is held."""
    version = importlib.metadata.version
    held = {"pyarrow": "18.1.0", "numpy": version("numpy")}
    ours = {**read(), "datasets": "99.0.0", "fsspec": "1999.1.0"}  # the tested pins, fsspec's below datasets' floor
    kept = runtime_copies(CONFLICT, held, ours)
    assert kept == {"datasets": version("datasets"), "fsspec": version("fsspec")}
    # once tried (ours rejected that copy), it is not kept again: the held package is then released as before
    assert runtime_copies(CONFLICT, held, ours, tried=kept) == {}
    # a package the runtime does not have, whose pin needs a newer requests than the runtime's, offers no copy to keep
    lacking = "    not-installed-here 0.7.0 depends on requests>=2.32.5\n"
    assert importlib.util.find_spec("not_installed_here") is None
    assert runtime_copies(lacking, {"requests": "2.32.4"}, ours) == {}
