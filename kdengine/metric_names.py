"""The names the run store's metrics use, in one place (no imports): the splits and each record's metric keys."""

SPLITS = ("train", "val", "test")
HEADLINE = ("accuracy", "macro_f1", "kappa", "ece")  # a split's headline: the final event, shift cells, trackers
EPOCH_TRAIN = ("loss", "accuracy", "macro_f1")  # what an epoch event keeps of its training pass
EPOCH_VAL = ("loss", *HEADLINE)  # and of its validation
PER_SPLIT = (*HEADLINE, "loss", "agreement")  # a split's numbers in metrics.json that the long table carries
