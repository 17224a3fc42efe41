"""``python -m kdtui``: what each browser tab of ``kdtui --serve`` runs."""
import sys

from .app import main

sys.exit(main())
