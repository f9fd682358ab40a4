"""What the notebooks' cells call and show around the course's code.

* :mod:`.session`: the set-up, the Hub login, the workspace's load and save, where checkpoints go (a cell's one
  door to ``helpers.runtime`` and ``helpers.services``);
* :mod:`.display`: tables, a helper's source with its lines marked, what a real run reaches;
* :mod:`.plots`: log-mel, lengths, training curves, error rates;
* :mod:`.course`: the notebooks, their release, Colab links and set-up cell (:mod:`.colab_install` installs it);
* :mod:`.workshop`: the one-runtime workshop's agenda, pre-flight checks and short run.
"""
