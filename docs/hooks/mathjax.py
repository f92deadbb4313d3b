"""MathJax for the site from the installed Python package, so that neither building nor reading the
site fetches anything: MathJax 3's ``tex-svg.js`` (TeX in, SVG out, the glyphs inside the script: no
font files) is added to the site as ``assets/mathjax/tex-svg.js``, with MathJax's licence beside it.

The package ``django-static-mathjax`` (the ``docs`` extra) holds an unchanged copy of MathJax's
``es5`` build; Django itself is neither needed nor imported."""

from __future__ import annotations

from importlib.resources import files as package_files

from mkdocs.structure.files import File, Files

#: what the site takes from the package: its path there -> its path in the site
TAKEN = {"es5/tex-svg.js": "assets/mathjax/tex-svg.js", "LICENSE": "assets/mathjax/LICENSE"}


def on_files(files: Files, config) -> Files:
    """Add MathJax's script and licence to the site's files."""
    mathjax = package_files("mathjax") / "static" / "mathjax"
    for source, destination in TAKEN.items():
        files.append(File.generated(config, destination, abs_src_path=str(mathjax / source)))
    return files
