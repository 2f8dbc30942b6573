"""Temporary files and folders that fastgan renames into place (checkpoints, sample grids,
caches). tempfile makes them private (0600, 0700) so that no one reads a half-written file;
once renamed they are ordinary output, so these give them the mode open() and mkdir() would
(0666 and 0777 less the umask) before anything is written."""
import os
import tempfile


def umask():
    """The process's umask, read without changing it where the OS shows it (Linux), since
    os.umask() sets it for every thread while it reads it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mkstemp(*, dir, prefix, suffix):
    """tempfile.mkstemp(dir=, prefix=, suffix=) with the mode open() gives a new file."""
    fd, name = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~umask())
    except (AttributeError, OSError):  # no fchmod (Windows), or a file system without modes
        pass
    return fd, name


def mkdtemp(*, dir, prefix):
    """tempfile.mkdtemp(dir=, prefix=) with the mode mkdir() gives a new folder."""
    name = tempfile.mkdtemp(dir=dir, prefix=prefix)
    try:
        os.chmod(name, 0o777 & ~umask())
    except OSError:
        pass
    return name
