"""The data layer: sources, splits, the decoded cache, augmentation (torch only in loader.py)."""
