"""The book's own tools (docs/build.sh runs them):

  python3 docs/book.py split     the sections of README.md and docs/guide.md as
                                 docs/src/sections/<slug>.md, each from its heading to the next one
                                 of the same or a higher level, with links rewritten for the book
                                 (an anchor to the page that includes its section; a repository
                                 file to GitHub), and README.md's opening as intro.md;
  python3 docs/book.py check     every link and image of the built book (.local/book) resolves:
                                 the file exists and, with a #fragment, has that id; and the
                                 Teams manifest's privacy and terms URLs are pages of the book.
"""
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "docs" / "src"
FRAGMENTS = SRC / "sections"
# The texts cut into sections, each with the folder its relative links start from.
SOURCES = [(ROOT / "README.md", ROOT), (ROOT / "docs" / "guide.md", ROOT / "docs")]
BUILT = ROOT / ".local" / "book"
REPOSITORY = "https://github.com/regate/regate/blob/main/"
# Where the book is published; the Teams manifest's URLs must be pages under it.
SITE = "https://regate.github.io/regate/"
HEADING = re.compile(r"^(#{2,3}) (.+)$")


def slug(title: str) -> str:
    """A heading's anchor, as GitHub and mdBook make it."""
    text = re.sub(r"[`*_]", "", title.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def sections(lines):
    """(slug, level, start, end) of each ## and ### section; fenced code is not a heading."""
    found, fenced = [], False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            found.append((slug(match.group(2)), len(match.group(1)), number))
    out = []
    for i, (name, level, start) in enumerate(found):
        end = next((s for _, lvl, s in found[i + 1:] if lvl <= level), len(lines))
        out.append((name, level, start, end))
    return out, (found[0][2] if found else len(lines))


def split() -> None:
    texts = [(path.read_text().splitlines(), base) for path, base in SOURCES]
    cut = [(lines, base, *sections(lines)) for lines, base in texts]
    # Which page includes each section, so an anchor can point there.
    page_of_fragment = {}
    for page in SRC.glob("*.md"):
        for name in re.findall(r"\{\{#include sections/([\w\-]+)\.md\}\}", page.read_text()):
            page_of_fragment[name] = page.name
    page_of_anchor = {}
    for _, _, parts, _ in cut:
        for name, _, start, end in parts:
            page = page_of_fragment.get(name)
            if page:
                for inner, _, s, e in parts:
                    if start <= s < end:
                        page_of_anchor.setdefault(inner, page)

    def rewrite(text: str, base: Path) -> str:
        def link(match):
            label, target = match.group(1), match.group(2)
            if re.match(r"^[a-z]+:", target):
                return match.group(0)
            if target.startswith("#"):
                page = page_of_anchor.get(target[1:])
                if page is None:
                    raise SystemExit(f"a link to #{target[1:]}, which no book page includes")
                return f"[{label}]({page}{target})"
            path, _, fragment = target.partition("#")
            file = (base / path).resolve()
            if not file.exists():
                raise SystemExit(f"a link to {target} from {base}, which does not exist")
            relative = file.relative_to(ROOT).as_posix()
            if relative == "docs/runbook.md":
                return f"[{label}](runbook.md{'#' + fragment if fragment else ''})"
            if relative.startswith("docs/images/"):
                return f"[{label}]({relative[len('docs/'):]})"
            if relative == "docs/guide.md" and fragment in page_of_anchor:
                return f"[{label}]({page_of_anchor[fragment]}#{fragment})"
            return f"[{label}]({REPOSITORY}{relative}{'#' + fragment if fragment else ''})"
        return re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", link, text)

    if FRAGMENTS.exists():
        shutil.rmtree(FRAGMENTS)
    FRAGMENTS.mkdir(parents=True)
    count = 0
    for index, (lines, base, parts, first) in enumerate(cut):
        if index == 0:
            (FRAGMENTS / "intro.md").write_text(rewrite("\n".join(lines[:first]), base) + "\n")
        for name, _, start, end in parts:
            (FRAGMENTS / f"{name}.md").write_text(rewrite("\n".join(lines[start:end]), base) + "\n")
            count += 1
    images = SRC / "images"
    if images.exists():
        shutil.rmtree(images)
    shutil.copytree(ROOT / "docs" / "images", images)
    missing = [n for n in page_of_fragment if not (FRAGMENTS / f"{n}.md").exists()]
    if missing:
        raise SystemExit(f"book pages include sections that do not exist: {missing}")
    print(f"book: {count + 1} sections in {FRAGMENTS.relative_to(ROOT)}")


def check() -> None:
    problems, links = [], 0
    ids = {}
    for page in BUILT.rglob("*.html"):
        ids[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(errors="replace")))
    for page in ids:
        text = page.read_text(errors="replace")
        for target in re.findall(r'(?:href|src)="([^"]+)"', text):
            # Other sites, and site-absolute paths (the 404 page's, under site-url when published).
            if re.match(r"^(https?:|mailto:|data:|javascript:)", target) or target.startswith("/"):
                continue
            links += 1
            path, _, fragment = target.partition("#")
            file = page if not path else (page.parent / path).resolve()
            if file.is_dir():
                file = file / "index.html"
            if not file.exists():
                problems.append(f"{page.relative_to(BUILT)}: {target}: no such file")
            elif fragment and file.suffix == ".html" and fragment not in ids.get(file, set()):
                problems.append(f"{page.relative_to(BUILT)}: {target}: no id {fragment!r}")
    manifest = json.loads((ROOT / "infra" / "teams" / "manifest.json").read_text())
    for key in ("privacyUrl", "termsOfUseUrl"):
        url = manifest["developer"][key]
        if not url.startswith(SITE):
            problems.append(f"the Teams manifest's {key} {url} is not a page of the book ({SITE})")
            continue
        page = url[len(SITE):]
        if not (BUILT / page).exists() or not (SRC / page.replace(".html", ".md")).exists():
            problems.append(f"the Teams manifest's {key} {url} is not a page in docs/src")
    for problem in problems:
        print("broken:", problem)
    print(f"book: {len(ids)} pages, {links} links checked, {len(problems)} broken")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    {"split": split, "check": check}[sys.argv[1]]()
