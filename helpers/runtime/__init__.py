"""The machinery that keeps a run alive, behind the course's pieces (a notebook's cells reach it through
:mod:`helpers.notebook.session`).

* :mod:`.colab`: the notebook's kernel (quiet output, text progress bars, one-line errors, Google Drive);
* :mod:`.workspace`: where the notebooks hand their results to each other, stamped with the run that made them;
* :mod:`.mirror`: checkpoints on the runtime's disk, small copies of them on Drive;
* :mod:`.checkpoints`: which checkpoint was saved to the end, for resuming and restoring;
* :mod:`.device`: where inference runs, and out-of-memory errors turned into advice;
* :mod:`.distributed`: several processes (``torchrun``), evaluation that scores every clip once;
* :mod:`.lock`: one run at a time in a folder;
* :mod:`.trainer_internals`: the private parts of transformers' ``Trainer``, and the list of every private API
  the project leans on;
* :mod:`.secrets`: whether this is Colab, and its secrets;
* :mod:`.errors`: the learner's one-sentence errors, and reachability probes.
"""
