"""Voice members: a head on pooled whisper encoder states (:mod:`.train`), the weightless
encoder-blocks graph (:mod:`.whisper_graph`) and the fine-tune retraining uses (:mod:`.finetune`)."""
