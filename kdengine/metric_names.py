"""The names the run store's metrics use, in one place (no imports): the splits and each record's metric keys."""

SPLITS = ("train", "val", "test")
HEADLINE = ("accuracy", "macro_f1", "kappa", "ece")  # a split's headline: the final event, shift cells, trackers
# what an epoch event keeps of its training pass: "loss" is what was minimised (for KD, CE and KD terms weighted);
# "ce" the plain cross-entropy on the training views, the quantity that compares with val's loss
EPOCH_TRAIN = ("loss", "ce", "accuracy", "macro_f1")
EPOCH_VAL = ("loss", *HEADLINE)  # and of its validation
PER_SPLIT = (*HEADLINE, "loss", "agreement")  # a split's numbers in metrics.json that the long table carries
YOUDEN = "youden"  # the rule a run chooses its sensitivity/specificity thresholds by on val (Youden's J)
THRESHOLD_METRICS = ("sensitivity", "specificity")  # the metrics read at a threshold chosen on val
