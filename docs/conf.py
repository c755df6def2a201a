"""Sphinx configuration for deploytrigger's documentation (``make docs``).

Stock Sphinx only: autodoc for the reference, napoleon for the Google-style
docstrings, the alabaster theme. No intersphinx: the build needs no network.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from deploytrigger import __version__

project = "deploytrigger"
author = "deploytrigger contributors"
copyright = "2026, deploytrigger contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

exclude_patterns = ["_build"]
templates_path: list = []
html_static_path: list = []
html_theme = "alabaster"
html_theme_options = {
    "description": "Trigger Prefect deployments from synchronous Python",
    "page_width": "1240px",  # code lines of 88 characters fit at 1280 px, without scrolling
    "sidebar_width": "240px",
}

# Reference pages document the public names as ``deploytrigger.X``; the members
# keep the order of the source, which follows the flow of a call.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

nitpicky = False


def _cli_help_directive():  # type: ignore[no-untyped-def]
    """``.. deploytrigger-cli-help::``: each command's ``--help``, from the parser itself."""
    import argparse

    from docutils import nodes
    from docutils.parsers.rst import Directive

    from deploytrigger.cli import build_parser

    class CliHelp(Directive):
        has_content = False

        def run(self):  # type: ignore[no-untyped-def]
            os.environ["COLUMNS"] = "88"  # argparse wraps help to the terminal width
            parser = build_parser()
            sections = [("deploytrigger", parser.format_help())]
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        sections.append((f"deploytrigger {name}", sub.format_help()))
            result = []
            for title, text in sections:
                section = nodes.section(ids=[nodes.make_id(title + "-help")])
                section += nodes.title(text=title)
                block = nodes.literal_block(text, text)
                block["language"] = "text"
                section += block
                result.append(section)
            return result

    return CliHelp


def setup(app):  # type: ignore[no-untyped-def]
    app.add_directive("deploytrigger-cli-help", _cli_help_directive())
