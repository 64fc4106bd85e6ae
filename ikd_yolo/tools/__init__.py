"""Analysis tools that read trained models and never change training: AP by object size (:mod:`.sizeval`) and the
frequency probe (:mod:`.probe`)."""
