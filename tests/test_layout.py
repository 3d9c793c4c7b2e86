"""README's Layout section matches the tree.

The block under ``## Layout`` names, line by line, files of the folder above (two spaces of
indentation per folder level; ``name/`` opens a folder; several names are separated by
commas; globs such as ``_gbt*.py`` cover a family). Text after two spaces is description,
and lines indented as far as the descriptions continue them. Every name must exist, and
every module of the packages, ``benchmarks/`` and ``docs/`` must be named.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lines indented at least this far continue the description of the line above.
DESCRIPTION_INDENT = 20
# Folders whose every file must be named: (folder, pattern of the files that count).
COVERED = [("disentangle_eval", "*.py"), ("cli", "*.py"), ("reference_models", "**/*.py"),
           ("benchmarks", "*.py"), ("docs", "*")]


def layout_block(readme: str) -> list[str]:
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```\n", 2)[1].splitlines()


def layout_names(lines: list[str]) -> list[tuple[str, str]]:
    """(folder, name) for every name of the block, folders relative to the root."""
    names, folders = [], []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= DESCRIPTION_INDENT:
            continue
        if indent % 2:
            raise ValueError(f"odd indentation in the Layout block: {line!r}")
        level = indent // 2
        if level > len(folders):
            raise ValueError(f"indented below no folder: {line!r}")
        del folders[level:]
        for name in re.split(r"\s{2,}", line.strip())[0].split(","):
            name = name.strip()
            names.append(("/".join(folders), name))
            if name.endswith("/"):
                folders.append(name.rstrip("/"))
    return names


def _matches(folder: str, name: str) -> list[Path]:
    return sorted((ROOT / folder).glob(name.rstrip("/")))


def test_the_parser_reads_folders_names_and_continuations():
    lines = ["a/                      text", "  x.py, y*.py           text",
             "                        more text", "  b/", "    z.py", "c.md"]
    assert layout_names(lines) == [("", "a/"), ("a", "x.py"), ("a", "y*.py"), ("a", "b/"),
                                   ("a/b", "z.py"), ("", "c.md")]


def test_every_name_in_the_layout_exists():
    names = layout_names(layout_block((ROOT / "README.md").read_text()))
    assert len(names) > 30
    missing = [f"{folder}/{name}" for folder, name in names if not _matches(folder, name)]
    assert missing == []


def test_every_module_is_named_in_the_layout():
    names = layout_names(layout_block((ROOT / "README.md").read_text()))
    named = {path for folder, name in names for path in _matches(folder, name)}
    unnamed = [str(path.relative_to(ROOT)) for folder, pattern in COVERED
               for path in sorted((ROOT / folder).glob(pattern))
               if path.is_file() and "__pycache__" not in path.parts and path not in named]
    assert unnamed == []
