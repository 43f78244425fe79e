"""Puts the tables the benchmarks left in a folder into BENCHMARKS.md: the text between
`<!-- generated: NAME -->` and `<!-- end generated -->` becomes NAME.md, under a line naming
the date and the machine. Parts with no new table keep their last figures."""

import datetime
import os
import pathlib
import platform
import re
import sys


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.machine()}, Linux {platform.release()}"


def main(tables: pathlib.Path, doc: pathlib.Path) -> None:
    text = doc.read_text()
    stamp = f"_Measured {datetime.date.today().isoformat()} on {machine()}._"
    for table in sorted(tables.glob("*.md")):
        name = table.stem
        pattern = re.compile(
            rf"(<!-- generated: {re.escape(name)} -->\n).*?(<!-- end generated -->)", re.S
        )
        if not pattern.search(text):
            print(f"publish: BENCHMARKS.md has no generated part {name!r}", file=sys.stderr)
            sys.exit(1)
        body = f"{stamp}\n\n{table.read_text().strip()}\n"
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    doc.write_text(text)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
