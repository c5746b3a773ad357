"""Fetch KaTeX from the npm registry into build/vendor/katex, for the site to serve itself.

`make docs` runs this before every build; it does nothing when the pinned version is already
there. The tarball comes from `npm pack` (the registry's ordinary client) and must match the
integrity recorded here, so the site's math renderer is the same bytes on every machine.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.19.1"
# npm's integrity string of the tarball (`npm view katex@VERSION dist.integrity`).
INTEGRITY = (
    "sha512-"
    "jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA=="
)
# What the site serves, relative to the package's dist/ folder.
FILES = ["katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts"]
DEST = Path(__file__).resolve().parent.parent / "build" / "vendor" / "katex"


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor(dest: Path = DEST) -> None:
    stamp = dest / "VERSION"
    if stamp.exists() and stamp.read_text().strip() == VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("make docs needs npm, to fetch KaTeX from the npm registry (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", "--silent", f"katex@{VERSION}"], cwd=tmp, check=True, capture_output=True
        )
        tarball = Path(tmp) / f"katex-{VERSION}.tgz"
        found = integrity(tarball)
        if found != INTEGRITY:
            sys.exit(f"katex-{VERSION}.tgz has integrity {found}, expected {INTEGRITY}")
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")  # no paths outside tmp, no special files
        package = Path(tmp) / "package"
        shutil.rmtree(dest, ignore_errors=True)
        for name in FILES:
            source, target = package / "dist" / name, dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        shutil.copy2(package / "LICENSE", dest / "LICENSE")
    stamp.write_text(VERSION + "\n")
    print(f"vendored KaTeX {VERSION} from the npm registry into {dest}")


if __name__ == "__main__":
    vendor()
