"""Text members: ``emodesk train text`` (:mod:`.train`, the options and the dispatch) runs the MiniLM
fine-tune (:mod:`.finetune`, on the encoder of :mod:`.minilm`), a head re-fit on the frozen encoder
(:mod:`.head`) or the TF-IDF n-gram member (:mod:`.ngram`); all three read data through :mod:`.data`
and describe what they export through :mod:`.exported`."""
