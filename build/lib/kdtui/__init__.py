"""kdtui: the Textual app over the kdstudy run store. It never imports torch."""
