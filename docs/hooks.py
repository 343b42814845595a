"""MkDocs hook (mkdocs.yml `hooks:`): one Markdown for GitHub and for the site.

In a table, GitHub needs a pipe inside `code` written `\\|`, or it splits the cell there; Python-Markdown keeps
such a pipe in the code span anyway and would show the backslash. This turns `\\|` back into `|` inside code
spans of table rows before the page is rendered, so both show `soft|majority`."""

import re

_CODE = re.compile(r"`[^`\n]*`")


def on_page_markdown(markdown, **kwargs):
    return "\n".join(
        _CODE.sub(lambda m: m.group(0).replace("\\|", "|"), line) if line.lstrip().startswith("|") else line
        for line in markdown.split("\n")
    )
