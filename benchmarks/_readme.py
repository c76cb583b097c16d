"""Write a benchmark's Markdown table into its own marked section of benchmarks/README.md."""
from __future__ import annotations

from pathlib import Path

README = Path(__file__).with_name("README.md")


def replace_section(name: str, block: str, readme: Path = README) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else ""
    section = f"{start}\n{block}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += "\n" + section + "\n"
    readme.write_text(text)
