"""What only the Gradio app uses: the handlers (:mod:`~nada.app.handlers`) and the checks they run first
(:mod:`~nada.app.inputs`), Gradio glue, browser sessions and the training line, page-load handlers, the published
styles' thumbnails, the GPU halves of the handlers and ZeroGPU helpers. ``app.py`` lays the page out and wires these.
The library (``nada/*.py``) and the command line (:mod:`nada.cli`) never import this package."""
