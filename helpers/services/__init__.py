"""The outside services the course talks to: the Hub through its client library, the MDC over its HTTP API.

* :mod:`.mdc`: the Mozilla Data Collective, Common Voice's home since October 2025, over its HTTP API
  (:mod:`.mdc_http`, with ``requests``);
* :mod:`.hub`: the Hugging Face Hub's token, login and reachability (``huggingface_hub``);
* :mod:`.hub_errors`: what a failed Hub call means, in one sentence.
"""
