"""Writing outputs safely, the same way in every tool.

- :func:`check_output_dir`: before any work starts, make sure a folder can be created and written
  (a regular file in the way, no permission) — one InputError naming the path, not a traceback
  after an hour of work.
- :func:`shared_mode` / :func:`make_temporary`: temporary files and folders get the mode the user's
  umask gives ordinary files (mkstemp / mkdtemp make them 0600 / 0700, and renaming keeps that, so
  checkpoints and videos on a shared server were unreadable for the group).
- :func:`is_disk_full` / :func:`disk_full_error`: ENOSPC, whether an OSError or torch.save's
  RuntimeError wrapping one, becomes one DiskFullError line naming the path and what was kept.
- :func:`atomic_write_text`: a small text file through a temporary sibling; removed on any error.
"""
import errno
import os
import shutil
import tempfile

from errors import InputError, RunError


class OutputPathError(InputError):
    """An output path that cannot be created or written; the message names it and says what to do."""


class DiskFullError(RunError):
    """The disk filled up while writing; the message says where and what was kept."""


def _read_umask():
    # os.umask can only be read by setting it; done once, at import, before any worker thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def shared_mode(path):
    """Give ``path`` (a file or folder made by mkstemp / mkdtemp) the mode ``open`` / ``mkdir`` would."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~UMASK)


def make_temporary(folder, prefix=".tmp-", suffix="", directory=False):
    """A new temporary file (closed) or folder in ``folder`` with the umask's mode. → its path."""
    os.makedirs(folder, exist_ok=True)
    if directory:
        path = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=folder)
    else:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        os.close(fd)
    shared_mode(path)
    return path


def remove_temporaries(folder, prefix=".tmp-"):
    """Remove what a killed writer left in ``folder`` (files or folders named ``prefix``…).
    Only call it where no other process writes at the same time. → the removed paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for entry in os.scandir(folder):
        if not entry.name.startswith(prefix):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
            removed.append(entry.path)
        except OSError:
            pass
    return removed


def check_output_dir(path, flag="output folder"):
    """Raise OutputPathError unless the folder ``path`` exists and is writable, or can be created.

    Nothing is created: the first existing ancestor must be a writable folder. ``flag`` names the
    option the path came from (e.g. '--out').
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{flag} {path}: is a file, not a folder; pick another path")
    ancestor = path
    while not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise OutputPathError(f"{flag} {path}: cannot be created, {ancestor} is a file; pick another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        where = "" if ancestor == path else f" ({ancestor} is not writable)"
        raise OutputPathError(f"{flag} {path}: no permission to write{where}; pick a folder you can write to")
    return path


def check_output_file(path, flag="output file"):
    """Like :func:`check_output_dir` for a file: its folder can be made, and it is not a folder itself."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise OutputPathError(f"{flag} {path}: is a folder; give a file name")
    check_output_dir(os.path.dirname(path), flag)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: no permission to write; pick a file you can write to")
    return path


_FULL_WORDS = ("no space left on device", "disk quota exceeded", "errno 28")


def is_disk_full(error):
    """True for ENOSPC / EDQUOT, also when torch or ffmpeg wrap it in a RuntimeError or an IOError text.
    torch.save reports a full disk as 'RuntimeError: [enforce fail at inline_container.cc] . PytorchStreamWriter
    failed writing file …: file write failed', hence its words count too."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error).lower()
    if any(words in text for words in _FULL_WORDS):
        return True
    cause = error.__cause__ or error.__context__
    if isinstance(error, RuntimeError) and "file write failed" in text:
        return True
    return cause is not None and cause is not error and is_disk_full(cause)


def disk_full_error(where, kept):
    """The one-line error for a full disk: ``where`` was being written, ``kept`` says what is intact."""
    return DiskFullError(f"disk full while writing {where}; {kept}; free some space and run again")


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary sibling (umask's mode), removed on any error."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary sibling (umask's mode), removed on any error."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = make_temporary(folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
