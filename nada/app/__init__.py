"""What only the Gradio app uses, a module per tab and one per job the tabs share. ``app.py`` lays the page out and
wires these in; the library (``nada/*.py``) and the command line (:mod:`nada.cli`) never import this package.

The tabs, each with its handlers, their input checks and its GPU tasks: :mod:`~nada.app.adapt_tab`,
:mod:`~nada.app.generate_tab` (with its "Mix styles" box, :mod:`~nada.app.mix`), :mod:`~nada.app.invert_tab`.
Shared: :mod:`~nada.app.errors` (what a person reads when something fails), :mod:`~nada.app.wiring` (handlers to
components by name), :mod:`~nada.app.page` (page texts, display helpers, ``page.css`` and ``page.js``),
:mod:`~nada.app.input_checks`, :mod:`~nada.app.style_menus` (the style pickers), :mod:`~nada.app.sessions` (a
browser's styles and uploaded generators), :mod:`~nada.app.own_models` (your own generator: checked, then a source of
its session only), :mod:`~nada.app.training_queue` (one run on the GPU at a time), :mod:`~nada.app.thumbnails` (the
published styles' pictures), :mod:`~nada.app.zoo_styles` (a zoo folder served as a gallery, ``NADA_ZOO_DIR``),
:mod:`~nada.app.zerogpu` (GPU tasks in a worker process).
"""
