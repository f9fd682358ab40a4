"""What the notebooks show around the course's code: tables, plots, the course's map and the workshop.

* :mod:`.display`: tables, a helper's source with its lines marked, what a real run reaches;
* :mod:`.plots`: log-mel, lengths, training curves, error rates;
* :mod:`.course`: the notebooks, their release, Colab links and set-up cell;
* :mod:`.workshop`: the one-runtime workshop's agenda, pre-flight checks and short run.
"""
