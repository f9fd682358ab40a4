"""pytest.ini's warning policy: a deprecation raised from our own code fails the test; a library's is shown.

Each warning is raised from code whose module is the one named (as ``warnings`` attributes it), under the
filters pytest installs from pytest.ini for every test.
"""

import warnings

import pytest


def warn_from(module: str, category: type[Warning], stacklevel: int = 1) -> None:
    """``warnings.warn`` called from code of module ``module`` (or, stacklevel=2, from its caller's)."""
    source = f"import warnings\nwarnings.warn('an old API', {category.__name__}, stacklevel={stacklevel})\n"
    exec(compile(source, f"<{module}>", "exec"), {"__name__": module, category.__name__: category})


@pytest.mark.parametrize("module", ["helpers", "helpers.metrics", "tools.make_notebooks", "benchmarks.run",
                                    "test_metrics", "conftest"])
@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_a_deprecation_from_our_code_is_an_error(module, category):
    with pytest.raises(category, match="an old API"):
        warn_from(module, category)


def test_a_library_deprecating_a_call_we_make_is_an_error_too():
    """transformers and friends warn with stacklevel=2: the warning is attributed to our calling module."""

    def deprecated_library_call():
        warnings.warn("use the new argument", FutureWarning, stacklevel=2)

    with pytest.raises(FutureWarning):
        exec("call()", {"__name__": "helpers.training", "call": deprecated_library_call})


@pytest.mark.parametrize("module", ["transformers.trainer", "datasets.arrow_dataset", "helpersx", "mytools"])
def test_a_deprecation_inside_a_library_is_shown_not_raised(module):
    with warnings.catch_warnings(record=True) as caught:  # keeps pytest.ini's filters, records what passes
        warn_from(module, DeprecationWarning)
    assert [str(w.message) for w in caught] == ["an old API"]


def test_only_the_named_third_party_warning_is_ignored():
    with warnings.catch_warnings(record=True) as caught:
        # How importing librosa warns: attributed to audioread.rawread, the module that imports aifc.
        exec("import warnings\nwarnings.warn(\"'aifc' is deprecated and slated for removal in Python 3.13\", "
             "DeprecationWarning)", {"__name__": "audioread.rawread"})
        exec("import warnings\nwarnings.warn(\"'aifc' is deprecated\", DeprecationWarning)",
             {"__name__": "transformers.audio_utils"})
    assert [str(w.message) for w in caught] == ["'aifc' is deprecated"]
