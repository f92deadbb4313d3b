"""A Griffe extension for the API reference: the docstrings' Sphinx roles as Markdown.

fastmlp's docstrings name other objects the way Python's own tools read them in a terminal,
``:class:`~fastmlp.errors.DivergenceError``` or ``:meth:`save```. mkdocstrings renders Markdown, so
each role becomes a cross-reference where it names its target in full (``fastmlp.…``: a link into
this reference; a name ``import fastmlp`` exports points where it is defined) and inline code where
it names it relative to the docstring (``save``)."""

from __future__ import annotations

import re
from typing import Any

import griffe

from fastmlp import _EXPORTS

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(?P<text>[^`<]+?)(?:\s*<(?P<target>[^`>]+)>)?`")


def markdown(match: re.Match[str]) -> str:
    """One role as Markdown: ``[`DivergenceError`][fastmlp.errors.DivergenceError]`` or ```save```."""
    text, target = match["text"].strip(), match["target"]
    shown = text.removeprefix("~").split(".")[-1] if text.startswith("~") else text
    target = target or text.removeprefix("~")
    parts = target.split(".")
    if len(parts) > 1 and parts[1] in _EXPORTS:  # fastmlp.MLP.save is documented where MLP is defined
        target = ".".join([_EXPORTS[parts[1]], *parts[1:]])
    if target.startswith("fastmlp."):
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring's roles once the object is loaded (before its docstring is parsed)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(markdown, obj.docstring.value)
