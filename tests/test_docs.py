"""The README stays a short entry point into the docs site (the site itself is built by
`make test` with `mkdocs build --strict`, which fails on a broken link or an undescribed config key)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_is_short():
    assert README.stat().st_size <= 15_000


def test_readme_starts_with_the_two_make_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands[:2] == ["make run", "make test"]


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#\s]+)", README.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    assert [t for t in local if not (ROOT / t).exists()] == []
