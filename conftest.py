"""pytest-xdist's scheduling for the whole project (``-n 2`` in pytest.ini), here at the root so that it holds
for ``pytest notebooks`` and ``pytest tests`` alike."""


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``-n 2``, pytest.ini), send each test file's tests to one worker, so that a module's
    fixture (a CLI run, a conversion) runs once rather than in each worker, and every notebook to one worker,
    in order: they share a workspace, each reading what the one before it left there. xdist's own ``--dist loadfile``
    scatters the notebooks over both workers, each with its own temporary workspace, and 02 then stops for want
    of 01's output; ``--dist loadgroup`` would say this with marks, but it renames node ids, which pytest 9.2 no
    longer allows; a separate notebook run (``--dist loadfile`` for tests/, then ``-n 0`` for notebooks/) leaves a
    core idle while the notebooks run one after another (measured on a subset: docs/developing.md). This relies
    on xdist's private ``_split_scope`` (listed in helpers/runtime/trainer_internals.py, tests/test_private_apis.py)."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesTogetherNotebooksInOrder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else path

    return FilesTogetherNotebooksInOrder(config, log)


def pytest_configure(config):
    """Build the offline smoke model when it is missing or outdated (tools/smoke_model.py: test infrastructure,
    not in the package), once, before any worker starts: the notebooks' smoke runs and most tests load it."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller has done it
        return
    from tools.smoke_model import ensure_smoke_model

    ensure_smoke_model()
