"""Atomic writes: a reader sees the old file or the new one, never half of one.

Everything kerasprune writes (models, results, reports) goes through here, so a run
killed mid-write leaves no truncated artifact for a resume to trust.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import FileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write, then move it in place.

    The temporary name keeps ``path``'s suffix, because writers such as ``model.save``
    choose the format from it.  On error the temporary is removed and ``path`` is untouched.
    A file never replaces a folder (``to_tflite(model, "saved_models")`` must not delete
    one); with ``folder`` the caller writes a folder it owns (KeepBest's ``best/``), which
    replaces the previous version of itself but never a file.  A full or read-only disk is
    a FileError that names ``path``, not the temporary.
    """
    path = Path(path)
    if not folder:
        refuse_folder(path)
    else:
        recover_folder(path)
    if folder and path.exists() and not path.is_dir():
        raise FileError(f"{path} is a file, where a folder is to be written; move it away or "
                        "choose another folder. Nothing was written.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise _unwritable(path, exc) from None
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a non-empty folder: move the old one aside first;
            # after a kill between the two renames, recover_folder puts it back
            os.replace(path, tmp_dir / ".old")
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def recover_folder(path: str | os.PathLike) -> Path:
    """``path`` as the last complete :func:`atomic_path` write of a folder left it: a
    process killed after moving the old folder aside and before moving the new one in
    left the old one in a hidden sibling, which goes back; other leftovers go."""
    path = Path(path)
    for left in _temporaries(path):
        if (left / ".old").is_dir() and not path.exists():
            os.replace(left / ".old", path)
        shutil.rmtree(left, ignore_errors=True)
    return path


def remove_folder(path: str | os.PathLike) -> None:
    """Remove a folder written by :func:`atomic_path`, with what a killed write left of it
    (which :func:`recover_folder` would otherwise bring back)."""
    path = Path(path)
    for left in _temporaries(path):
        shutil.rmtree(left, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def _temporaries(path: Path) -> list[Path]:
    """The temporaries :func:`atomic_path` made for ``path`` (``tempfile.mkdtemp``'s names)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}")
    return sorted(p for p in path.parent.glob(f".{glob.escape(path.name)}.*")
                  if p.is_dir() and pattern.fullmatch(p.name))


def refuse_folder(path: str | os.PathLike) -> None:
    """FileError if ``path``, where a file is to go, is a folder (checked before slow work)."""
    path = Path(path)
    if path.is_dir():
        raise FileError(f"{path} is a folder; give the path of a file to write (e.g. "
                        f"{path / ('model' + (path.suffix or '.out'))}). Nothing was written.")


def _unwritable(path: Path, exc: OSError) -> FileError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return FileError(f"cannot write {path}: {reason}. Free space or fix the permissions of "
                     f"{path.parent}, or write elsewhere; {path} was left as it was.")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
