"""The machinery that keeps a run alive, behind the course's pieces.

* :mod:`.colab`: a notebook's set-up (profile, Drive, secrets, the Hub login, quiet output);
* :mod:`.workspace`: where the notebooks hand their results to each other, stamped with the run that made them;
* :mod:`.mirror`: checkpoints on the runtime's disk, small copies of them on Drive;
* :mod:`.device`: where inference runs, and out-of-memory errors turned into advice;
* :mod:`.distributed`: several processes (``torchrun``), evaluation that scores every clip once;
* :mod:`.trainer_internals`: the private parts of transformers' ``Trainer`` we rely on, in one place;
* :mod:`.errors`: the learner's one-sentence errors, and a reachability probe.
"""
