"""Writing results safely: atomic files, strict JSON, and output directories that never clobber
another run's files unasked and are written all at once."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from sublim_toy.errors import UserError, ctrl_c_held_back


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def json_text(obj) -> str:
    """Pretty, strict JSON: a NaN or infinity is an error here, never a token in a file
    (records turn non-finite numbers into null, with a flag saying why)."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj) -> Path:
    """Pretty strict JSON, written atomically."""
    text = json_text(obj)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def check_directory(path: str | os.PathLike, what: str) -> None:
    """Refuse, in one line, unless `path` is or can be made a writable directory.

    `what` names the location as the user gave it ("--out", "--cache-dir"). Checked before
    any compute, so a bad location never costs a run.
    """
    path = Path(path)
    existing = path
    while not (existing.exists() or existing.is_symlink()) and existing.parent != existing:
        existing = existing.parent
    if existing == path:
        if not path.is_dir():
            raise UserError(f"{what} {path}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path}: directory is not writable")
    elif not existing.is_dir():
        raise UserError(f"{what} {path}: cannot be created, {existing} is not a directory")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: cannot be created, {existing} is not writable")


class OutputDir:
    """A command's output directory: checked before any compute, written all at once after it.

    `owned` are the file names the command writes (only some may be written by one run). If
    any of them exists, the directory holds an earlier run: refused unless `overwrite`. With
    `overwrite`, `commit` replaces them and deletes the owned files this run did not write, so
    nothing of the earlier run survives beside the new one; files the command does not own
    are never touched.
    """

    def __init__(self, path: str | os.PathLike, owned: Iterable[str], *, overwrite: bool):
        self.path = Path(path)
        self.owned = tuple(owned)
        check_directory(self.path, "--out")
        in_the_way = [name for name in self.owned if (self.path / name).is_dir()]
        if in_the_way:
            raise UserError(
                f"--out {self.path}: {', '.join(in_the_way)} is a directory where this command "
                "writes a file; remove it or choose another --out"
            )
        earlier = [name for name in self.owned if (self.path / name).exists()]
        if earlier and not overwrite:
            raise UserError(
                f"--out {self.path} already holds an earlier run ({', '.join(earlier)}); pass "
                "--overwrite to replace it, or choose a fresh --out"
            )

    def commit(self, files: dict[str, str | bytes]) -> list[Path]:
        """Write every file to a temp name here, then rename all into place, then delete the
        owned files this run did not write. A Ctrl-C before the renames leaves nothing;
        one during them waits until they are done."""
        unknown = set(files) - set(self.owned)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not among this command's files")
        self.path.mkdir(parents=True, exist_ok=True)
        staged: dict[str, Path] = {}
        try:
            for name, content in files.items():
                staged[name] = _temp_file(self.path / name)
                mode = "wb" if isinstance(content, bytes) else "w"
                with open(staged[name], mode) as handle:
                    handle.write(content)
            with ctrl_c_held_back(f"interrupted; the run's files were written to {self.path}"):
                for name, tmp in staged.items():
                    os.replace(tmp, self.path / name)
                for name in set(self.owned) - set(files):
                    (self.path / name).unlink(missing_ok=True)
        except OSError as err:
            raise UserError(f"cannot write {self.path}: {err}") from None
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
        return [self.path / name for name in files]


def _temp_file(path: Path) -> Path:
    """An empty temp file beside `path`, with the permissions an ordinary file would get."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
