"""Every code example of the README and of the documentation site (docs/), run as written.

Sybil reads the pages: each fenced block is an example of its kind, and the examples of one page
share a namespace and a working folder, as a reader going down the page would.

- ```` ```python ````: run; a block of ``>>>`` lines is a doctest, its shown output compared.
- ```` ```python title="fastmlp/network.py" ````: an excerpt of that file; its lines must be there, in order.
- ```` ```console ````: the ``$ `` lines are run in bash, one script per block; the other lines are
  what the page shows (from the documented run), not compared, except a ``fastmlp: error: ...``
  line, which its command must print, with exit status 2.
- ```` ```text ````: output or a table, not run.

``<!-- skip: next "reason" -->`` before a block skips it with the reason (a GPU, the network, minutes).
A page's working folder holds ``model.npz`` (the suite's small trained model) and ``docs`` (the
pictures and letters of this checkout), and the examples run as from a fresh install: no
``FASTMLP_DATA`` (the sample shipped in the package), no network, an empty cache.

Beside the examples: every block is one of those kinds (an indented block would be run by
nobody), and every ``fastmlp``, ``make`` and ``python`` command a page shows, run or not, is one
the real argument parser, the Makefile and the checkout accept.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

import pytest

sybil = pytest.importorskip("sybil", reason='the examples are read by Sybil: pip install -e ".[test]"')
markdown_it = pytest.importorskip("markdown_it", reason='pip install -e ".[test]" (markdown-it-py)')

from sybil import Sybil  # noqa: E402
from sybil.evaluators.doctest import DocTestEvaluator  # noqa: E402
from sybil.evaluators.python import PythonEvaluator  # noqa: E402
from sybil.parsers.abstract.doctest import DocTestStringParser  # noqa: E402
from sybil.parsers.markdown import SkipParser  # noqa: E402
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: the kinds of fenced block a page may hold: run, run and compared, or shown
KINDS = ("python", "console", "text")
INFO = re.compile(r'(?P<language>[\w-]*)\s*(?:title="(?P<title>[^"]*)")?\s*$')


# ------------------------------------------------------------------ the kinds of example
def check_excerpt(example):
    """A ```python title="PATH"``` block: each of its lines is a line of PATH, in the same order."""
    title, source = example.parsed
    path = REPO / title.split()[0]
    assert path.is_file(), f"{title}: no such file in the checkout"
    lines = iter(line.strip() for line in path.read_text().splitlines())
    for wanted in (line.strip() for line in source.splitlines() if line.strip()):
        if wanted not in lines:  # consumes the file's lines up to the match: the order is checked too
            raise AssertionError(f"{path.relative_to(REPO)} has no line {wanted!r} (after the ones before it)")


def commands(source):
    """The ``$ `` commands of a console block (continued by a trailing backslash), each with the
    lines the page shows after it."""
    found: list[tuple[str, list[str]]] = []
    continued = False
    for line in source.splitlines():
        if continued:
            found[-1] = (found[-1][0] + "\n" + line, found[-1][1])
        elif line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
        continued = line.endswith("\\")
    return found


def console_script(source):
    """The block as one bash script: every command must succeed, except one shown with a
    ``fastmlp: error: ...`` line, which must print that line and exit with status 2."""
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for command, shown in commands(source):
        if len(shown) == 1 and shown[0].startswith("fastmlp: error: "):
            script += [
                f"__out=$({command} 2>&1) && __status=0 || __status=$?",
                f'if [ "$__status" != 2 ] || [ "$__out" != {shlex.quote(shown[0])} ]; then',
                f'  echo "{command!r}: status $__status, printed: $__out" >&2; exit 1',
                "fi",
            ]
        else:
            script.append(command)
    return "\n".join(script)


def run_console(example):
    result = subprocess.run(
        ["bash", "-c", console_script(example.parsed)], cwd=os.getcwd(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


class Blocks:
    """A Sybil parser for every fenced block, by its kind (``python``, an excerpt, ``console``)."""

    def __init__(self):
        self.lexer = FencedCodeBlockLexer(language=r".*", mapping={"language": "info", "source": "source"})
        self.python = PythonEvaluator()
        self.doctests = DocTestStringParser(DocTestEvaluator())

    def __call__(self, document):
        for region in self.lexer(document):
            info = INFO.match(region.lexemes["info"])
            language, title, source = info["language"], info["title"], region.lexemes["source"]
            if language == "python" and title:
                region.parsed, region.evaluator = (title, source), check_excerpt
            elif language == "python" and source.startswith(">>>"):
                for doctest in self.doctests(source, document.path):
                    doctest.adjust(region, source)
                    yield doctest
                continue
            elif language == "python":
                region.parsed, region.evaluator = source, self.python
            elif language == "console":
                region.parsed, region.evaluator = source, run_console
            else:
                continue
            yield region


SYBIL = Sybil(parsers=[SkipParser(), Blocks()])
DOCUMENTS = {page: SYBIL.parse(page) for page in PAGES}
SKIP_DIRECTIVE = SYBIL.parsers[0].skipper


def is_directive(example):
    return example.region.evaluator is SKIP_DIRECTIVE


EXAMPLES = [
    pytest.param(page, index, id=f"{page.relative_to(REPO)}:{example.line}")
    for page, document in DOCUMENTS.items()
    for index, example in enumerate(document.examples())
    if not is_directive(example)
]


# ------------------------------------------------------------------ running them
@contextlib.contextmanager
def fresh_install(folder, cache):
    """In ``folder``, with the environment of a fresh install: no FASTMLP_DATA, no network, an
    empty cache, this environment's ``fastmlp`` command first on PATH."""
    saved, cwd = dict(os.environ), os.getcwd()
    os.environ.pop("FASTMLP_DATA", None)
    os.environ.update(
        FASTMLP_OFFLINE="1",
        FASTMLP_CACHE=str(cache),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


class Page:
    """One page's examples, run in order in its working folder, each at most once."""

    def __init__(self, path, folder, cache):
        self.examples = list(DOCUMENTS[path].examples())
        self.folder, self.cache = folder, cache
        self.done = 0  # the examples before this index have run
        self.failed: str | None = None

    def run_through(self, index):
        """Run the examples up to ``index``: those before it first, if a test selection left them out."""
        with fresh_install(self.folder, self.cache):
            while self.done <= index:
                if self.failed:
                    pytest.skip(f"not run: an example before it failed ({self.failed})")
                example = self.examples[self.done]
                self.done += 1
                try:
                    example.evaluate()
                except SkipTest:
                    if self.done > index:
                        raise  # this example is skipped, with its reason
                except Exception as exc:
                    self.failed = f"line {example.line}: {type(exc).__name__}: {exc}"
                    raise


@pytest.fixture(scope="module")
def pages(trained_model_file, tmp_path_factory):
    """Each page's runner, made on first use: a working folder like the checkout's, with ``docs``,
    ``fastmlp`` (the shipped sample's path) and a trained ``model.npz``."""
    made: dict[Path, Page] = {}

    def page(path):
        if path not in made:
            folder = tmp_path_factory.mktemp(path.stem)
            shutil.copy(trained_model_file, folder / "model.npz")
            for name in ("docs", "fastmlp"):
                (folder / name).symlink_to(REPO / name)
            made[path] = Page(path, folder, tmp_path_factory.mktemp("empty-cache"))
        return made[path]

    return page


@pytest.mark.parametrize(("page", "index"), EXAMPLES)
def test_example(pages, page, index):
    pages(page).run_through(index)


# ------------------------------------------------------------------ what the pages hold
def code_blocks(page):
    """(line, info string, content, fenced?) of every code block of a page."""
    tokens = markdown_it.MarkdownIt("commonmark").parse(page.read_text())
    return [
        (token.map[0] + 1, token.info.strip(), token.content, token.type == "fence")
        for token in tokens
        if token.type in ("fence", "code_block")
    ]


def test_the_pages_hold_examples_of_every_kind():
    kinds = {INFO.match(info)["language"] for page in PAGES for _, info, _, _ in code_blocks(page)}
    assert kinds == set(KINDS)
    assert len(EXAMPLES) > 40


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_code_block_is_a_kind_the_examples_know(page):
    """A block in another language, or an indented one, would be shown and never run."""
    unknown = [
        (line, info if fenced else "an indented block")
        for line, info, _, fenced in code_blocks(page)
        if not fenced or INFO.match(info) is None or INFO.match(info)["language"] not in KINDS
    ]
    assert unknown == [], "use ```python, ```console or ```text"


def shown_commands():
    """Every command of every console block (skipped or not): (page, line, argv)."""
    found = []
    for page in PAGES:
        for line, info, content, _ in code_blocks(page):
            if info != "console":
                continue
            for command, _ in commands(content):
                for part in re.split(r"\s*(?:\||&&|;|&$)\s*", command.replace("\\\n", " ")):
                    argv = shlex.split(part.split(" >", 1)[0], comments=True) if part else []
                    if argv:
                        found.append((page.relative_to(REPO), line, argv))
    return found


COMMANDS = shown_commands()
MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))


@pytest.mark.parametrize(
    "argv", [pytest.param(argv, id=" ".join(argv)[:60]) for _, _, argv in COMMANDS if argv[0] == "fastmlp"]
)
def test_every_fastmlp_command_shown_is_one_the_parser_accepts(argv, capsys):
    from fastmlp.cli import build_parser

    parser = build_parser()
    for command in (parser, *parser._subparsers._group_actions[0].choices.values()):
        command.allow_abbrev = False  # a flag shown must be the flag itself, not a prefix argparse accepts
    try:
        parser.parse_args(argv[1:])
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err  # --help and --version exit 0


def test_every_make_target_and_script_shown_exists():
    missing = []
    for page, line, argv in COMMANDS:
        if argv[0] == "make":
            missing += [(page, line, target) for target in argv[1:] if "=" not in target and target not in MAKE_TARGETS]
        elif Path(argv[0]).name.startswith("python") and argv[1].endswith(".py"):
            missing += [(page, line, argv[1])] if not (REPO / argv[1]).is_file() else []
    assert missing == []
    assert {argv[0] for _, _, argv in COMMANDS} >= {"fastmlp", "make", "python"}


def test_the_command_line_page_lists_every_flag():
    """Its synopsis names every flag of every command, as the parser has them."""
    from fastmlp.cli import build_parser

    page = (REPO / "docs" / "command-line.md").read_text()
    synopsis = page.split("```text\n", 1)[1].split("```", 1)[0]
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        block = synopsis.split(f"fastmlp {name}", 1)[1].split("fastmlp ", 1)[0]
        flags = {
            flag
            for action in parser._actions
            for flag in action.option_strings
            if flag.startswith("--") and flag not in ("--help", "--debug")
        }
        assert flags <= set(re.findall(r"--[a-z-]+", block)), (name, flags - set(re.findall(r"--[a-z-]+", block)))
        assert f"## `{name}`" in page  # and a section for each command
