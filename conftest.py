"""pytest-xdist's scheduling for the whole project (``-n 2`` in pytest.ini), here at the root so that it holds
for ``pytest notebooks`` and ``pytest tests`` alike."""

# The longest work units, measured (``--durations``; a unit is a test file, or all the notebooks), started first:
# xdist otherwise orders units by their number of tests, so a file of three long tests started last and ran alone
# on one worker for minutes while the other, done, stood idle. Each takes minutes on 2 cores; a file missing
# here is fine (it goes after these, by number of tests), a new file of minutes belongs here.
LEARNER_PATHS = "tests/test_learner_paths.py"
LONGEST_FIRST = (
    "notebooks",  # with the learner's paths
    "tests/test_offline_profile.py",
    "tests/test_colab_runtime.py",
    "tests/test_pretrained_finetuning.py",
    "tests/test_benchmarks.py",
    "tests/test_disk_faults.py",
    "tests/test_learning.py",
    "tests/test_lora.py",
    "tests/test_cli.py",
)


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``-n 2``, pytest.ini), send each test file's tests to one worker, so that a module's
    fixture (a CLI run, a conversion) runs once rather than in each worker, and every notebook to one worker,
    in order: they share a workspace, each reading what the one before it left there; the longest units first
    (:data:`LONGEST_FIRST`). xdist's own ``--dist loadfile`` scatters the notebooks over both workers, each with
    its own temporary workspace, and 02 then stops for want of 01's output; ``--dist loadgroup`` would say this
    with marks, but it renames node ids, which pytest 9.2 no longer allows; a separate notebook run (``--dist
    loadfile`` for tests/, then ``-n 0`` for notebooks/) leaves a core idle while the notebooks run one after
    another (measured on a subset: docs/developing.md). This relies on xdist's private ``_split_scope``,
    ``_assign_work_unit`` and ``workqueue`` (listed in helpers/runtime/trainer_internals.py,
    tests/test_private_apis.py)."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesTogetherNotebooksInOrder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            # The learner's paths go on from the workspace the notebooks left (tests/test_learner_paths.py).
            return "notebooks" if path.endswith(".ipynb") or path == LEARNER_PATHS else path

        def _assign_work_unit(self, node) -> None:
            # The longest unit still waiting goes out first; the others keep xdist's order (most tests first).
            rank = {scope: i for i, scope in enumerate(LONGEST_FIRST)}
            self.workqueue.move_to_end(min(self.workqueue, key=lambda scope: rank.get(scope, len(rank))), last=False)
            super()._assign_work_unit(node)

    return FilesTogetherNotebooksInOrder(config, log)


def pytest_configure(config):
    """Build the offline smoke model when it is missing or outdated (tools/smoke_model.py: test infrastructure,
    not in the package), once, before any worker starts: the notebooks' smoke runs and most tests load it."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller has done it
        return
    from tools.smoke_model import ensure_smoke_model

    ensure_smoke_model()
