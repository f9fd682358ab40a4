"""Beyond the course's unit: what a learner may add once the course's path runs.

* :mod:`.sharing`: the model card, the push to the Hub, the export folder, a Gradio demo (notebook 06);
* :mod:`.lora`: LoRA and 8-bit base weights, a bigger Whisper on the same GPU;
* :mod:`.ctranslate2`: the CTranslate2 (faster-whisper) export.
"""
