"""A zoo of styles: many compact styles trained together in one batch (:func:`adapt_many`), from a prompt file, on
this machine or as Ray tasks across a cluster (``nada zoo PROMPTS --out DIR``)."""

from .batch import adapt_many

__all__ = ["adapt_many"]
