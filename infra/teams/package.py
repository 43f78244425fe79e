"""Builds the Teams app package for regate's bot: manifest.json with the bot's app id filled in,
and the two icons Teams requires (color 192x192, outline 32x32 white on transparent), drawn
here rather than downloaded. Writes regate-teams.zip, which you upload to Teams.

  python3 infra/teams/package.py --app-id <the Azure Bot's Microsoft App ID> [--out DIR]
"""

import argparse
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def png(size: int, pixel) -> bytes:
    """An RGBA PNG of size x size whose pixel (x, y) is pixel(x, y) -> (r, g, b, a)."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def gate(size: int, x: int, y: int) -> bool:
    """A gate: two posts and a bar, in a size x size square."""
    u, v = x / size, y / size
    post = 0.22 <= v <= 0.82 and (0.2 <= u <= 0.32 or 0.68 <= u <= 0.8)
    bar = 0.34 <= v <= 0.44 and 0.2 <= u <= 0.8
    return post or bar


def icons() -> tuple:
    color = png(192, lambda x, y: (255, 255, 255, 255) if gate(192, x, y) else (46, 94, 78, 255))
    outline = png(32, lambda x, y: (255, 255, 255, 255) if gate(32, x, y) else (0, 0, 0, 0))
    return color, outline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-id", required=True, help="the Azure Bot's Microsoft App ID (a GUID)")
    parser.add_argument("--out", default=".", help="where to write regate-teams.zip")
    args = parser.parse_args()
    if not GUID.match(args.app_id):
        raise SystemExit(f"--app-id {args.app_id!r} is not a GUID; copy the Microsoft App ID from the Azure Bot's Configuration")
    manifest = (HERE / "manifest.json").read_text().replace("{{TEAMS_APP_ID}}", args.app_id)
    json.loads(manifest)
    color, outline = icons()
    out = Path(args.out) / "regate-teams.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", manifest)
        package.writestr("color.png", color)
        package.writestr("outline.png", outline)
    print(f"wrote {out}: upload it in Teams (Apps > Manage your apps > Upload an app)")


if __name__ == "__main__":
    main()
