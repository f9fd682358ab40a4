"""helpers: the thin package behind the course notebooks for fine-tuning Whisper (see README.md).

The course's pieces are the modules here, in the order the notebooks use them: ``config`` (profiles and
recipes), ``data`` (Common Voice and other sources, three splits), ``audio`` and ``preparation`` (16 kHz,
labels, the filters), ``collator``, ``metrics``, ``model`` (model and processor with language and task),
``training`` (training arguments, the trainer, resuming), ``evaluation`` (scoring the test split) and
``cli`` (the whole path in one command). Behind them: ``runtime/`` (what keeps a run alive), ``services/``
(the Mozilla Data Collective and the Hub), ``extras/`` (sharing, LoRA, CTranslate2) and ``notebook/`` (what
the notebooks show around the course's code). docs/architecture.md draws the layers.
"""

__version__ = "0.1.0"
