"""A checkbox that reads without colour: ``[x]`` when on, ``[ ]`` when off (Textual's shows ▐X▌ either way,
telling them apart by colour only, which a 16-colour terminal over SSH may not show)."""
from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class Tick(Checkbox):
    @property
    def _button(self) -> Content:
        return Content.assemble(("[x]" if self.value else "[ ]", self.get_visual_style("toggle--button")))
