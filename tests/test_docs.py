"""The README stays a front door, and no relative link in the README or under docs/ points nowhere.

Links are checked as files (resolved against the linking file's folder) and, where they carry a
#fragment into a markdown file, against the heading anchors mkdocs generates (Python-Markdown's toc
slugs). External links (http, https, mailto) and pure #anchors are not checked; nor is text inside code.
"""

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where link syntax means nothing."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """Python-Markdown's toc slugify of a heading's text (markup removed), as mkdocs makes anchors."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"[`*]|(?<!\w)_|_(?!\w)", "", text)  # code and emphasis markers
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ...; anchors within the page
        file, _, fragment = target.partition("#")
        resolved = (path.parent / file).resolve()
        if not resolved.exists():
            broken.append(
                f"{target} (no file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})"
            )
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading with anchor #{fragment} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)} links to what does not exist: " + "; ".join(broken)


def test_the_link_checker_sees_links():
    text = 'See [a](x.md#y), ![b](img/c.png "title"), `[not](code.md)` and [ext](https://example.org).\n'
    assert LINK.findall(prose(text)) == ["x.md#y", "img/c.png", "https://example.org"]
    assert LINK.findall(prose("```bash\n[not](a.md)\n```\n")) == []
    assert slug("MNIST DDPM (`mnist_ddpm`)") == "mnist-ddpm-mnist_ddpm"
    assert (
        slug("Latent video diffusion, DiT with adaLN (`latent_dit`)")
        == "latent-video-diffusion-dit-with-adaln-latent_dit"
    )
