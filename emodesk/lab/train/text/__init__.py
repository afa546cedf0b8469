"""Text members: the MiniLM fine-tune (:mod:`.train`), its encoder (:mod:`.minilm`), a head
re-fit on the frozen encoder (:mod:`.head`) and the TF-IDF n-gram member (:mod:`.ngram`)."""
