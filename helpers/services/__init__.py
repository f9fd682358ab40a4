"""The outside services the course talks to, through their real client libraries.

* :mod:`.mdc`: the Mozilla Data Collective, Common Voice's home since October 2025 (``datacollective`` SDK);
* :mod:`.hub`: the Hugging Face Hub's token, login and reachability (``huggingface_hub``);
* :mod:`.hub_errors`: what a failed Hub call means, in one sentence.
"""
