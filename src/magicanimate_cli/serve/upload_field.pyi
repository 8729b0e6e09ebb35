"""The page's upload field: Gradio's file field, minus two things it does with each upload.

Gradio 6.31's gr.File(type="filepath") creates an empty temporary file in its cache folder for every file it
hands on (and keeps nothing in it), and refuses a file of another type than `file_types` with a toast over the
page. This field hands on the uploaded file's path and nothing else; the job's own checks then say what is wrong
with a file, in the status area, as the command line would. The page gives its fields no `file_types` at all:
with them, Gradio's browser side refuses another file before it is uploaded, with a pop-up that covers the
buttons and vanishes (a dropped file, without a word).

A subclass of a Gradio component gets a typing stub written beside its module by Gradio (`upload_field.pyi`,
kept in the repository so that Gradio finds it current and writes nothing); that is why this class has a module
of its own.
"""

from __future__ import annotations

import gradio as gr

from gradio.events import Dependency

class UploadField(gr.File):
    """gr.File for one upload, handed to the server as its path (a template of gr.File: drawn as one)."""

    is_template = True

    def _process_single_file(self, f):
        from gradio.utils import NamedString

        return NamedString(f.path)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component