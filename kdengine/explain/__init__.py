"""Where the models look: class activation maps of finished runs (grad-cam), their agreement between a KD
student, its teacher and its baseline, and a border-band shortcut indicator."""
