"""A zoo of styles: many compact styles trained together in one batch, from a prompt file, on this machine or as Ray
tasks across a cluster (``nada zoo PROMPTS --out DIR``; ``nada.Studio.zoo`` in a notebook).

- :func:`adapt_many` (``batch``): K styles in one batch, each ending where training it alone ends;
- :func:`read_prompts` / :func:`parse_prompts` (``prompts``): the prompt file, one :class:`ZooEntry` per line;
- :func:`run_zoo` (``runner``): a zoo folder trained end to end, as :class:`ZooEvent` records; the batches
  (``jobs``), Ray (``cluster``), ``zoo.json`` (``book``), ``sheet.png`` and ``index.html`` (``sheet``);
- :func:`read_zoo` (``gallery``): a zoo folder read back as a gallery (the app serves one with ``NADA_ZOO_DIR``).
"""

from .batch import adapt_many
from .gallery import ZooError, ZooGallery, read_zoo
from .prompts import PromptFileError, ZooEntry, parse_prompts, read_prompts
from .runner import ZooEvent, run_zoo

__all__ = ["adapt_many", "read_prompts", "parse_prompts", "ZooEntry", "PromptFileError", "run_zoo", "ZooEvent",
           "read_zoo", "ZooGallery", "ZooError"]
