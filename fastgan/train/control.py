"""Run control: who may write a run directory, and how a run stops.

* **One process per run directory.** The process that trains holds an exclusive lock on
  RUN/.lock (fcntl.flock: the kernel drops it when the process dies, so a crash leaves no
  stale lock). While it is held, another process's --resume, --overwrite or new run in
  the same directory is refused with the holder's pid, instead of two processes writing
  interleaved checkpoints and logs into one run. Where fcntl does not exist (Windows) the
  lock is not taken; where the filesystem refuses locks, a warning says so.
* **Stopping at a step boundary.** SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption,
  `kill`) during Trainer.fit do not raise wherever Python happens to be: that could be in
  the middle of an optimizer step (half the parameters updated), and the checkpoint saved
  then would hold a state no step produced. The first signal is noted; the loop stops at
  the end of the step, saves a checkpoint there and raises Interrupted (SIGINT) or
  Terminated (SIGTERM), both KeyboardInterrupts. A second SIGINT stops at once, without
  saving a partial step (the newest checkpoint stays the last whole one). Under several
  processes the stop is agreed at the next log step, so every process stops after the
  same step.
"""
import os
import pathlib
import signal
import threading
import warnings
import weakref

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".lock"
_HELD = weakref.WeakSet()  # the RunLocks this process holds


def _drop_in_child():
    """After a fork (DataLoader workers): the child closes its copies of the lock files. A
    copy kept the lock after the trainer died (SIGKILL) until every worker had exited, and
    the next --resume was refused with the dead trainer's pid; the child's release() would
    have released the parent's lock (flock locks belong to the open file, which both share)."""
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


class Interrupted(KeyboardInterrupt):
    """fit() stopped on SIGINT at a step boundary (its checkpoint saved)."""


class Terminated(KeyboardInterrupt):
    """fit() stopped on SIGTERM at a step boundary (its checkpoint saved)."""


def _holder(path):
    try:
        pid = pathlib.Path(path).read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


class RunLock:
    """The exclusive lock on run_dir/.lock, held from acquire() to release()."""

    def __init__(self, run_dir):
        self.path = pathlib.Path(run_dir) / LOCK_NAME
        self._fd = None

    @staticmethod
    def check_free(run_dir):
        """ValueError when another process holds run_dir's lock; changes nothing (no lock
        file is created)."""
        if fcntl is None:
            return
        path = pathlib.Path(run_dir) / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # no lock file: no process has trained here since it was created
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"run directory {path.parent} is in use by another fastgan process"
                             f"{_holder(path)}; wait for it to finish or stop it") from None
        except OSError:  # a filesystem without locks (some network mounts): nothing to check
            pass
        finally:
            os.close(fd)

    def acquire(self):
        if fcntl is None or self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"run directory {self.path.parent} is in use by another fastgan process"
                             f"{_holder(self.path)}; wait for it to finish or stop it") from None
        except OSError as exc:  # a filesystem without locks (some network mounts)
            os.close(fd)
            warnings.warn(f"run directory {self.path.parent}: cannot lock it ({exc}); another process "
                          "could write into this run meanwhile", RuntimeWarning, stacklevel=2)
            return self
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD.add(self)
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            _HELD.discard(self)

    @property
    def held(self):
        return self._fd is not None


class StopRequests:
    """A context manager for the training loop: SIGINT and SIGTERM handlers (main thread only:
    Python delivers signals there) that note the first signal in `signum`; a second SIGINT
    raises KeyboardInterrupt at once. The previous handlers are restored on exit."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now (no printing here: not reentrant-safe)
        self.signum = signum

    def exception(self):
        """The exception that reports the stop."""
        name = signal.Signals(self.signum).name
        cls = Terminated if self.signum == signal.SIGTERM else Interrupted
        return cls(f"{name}: stopped at a step boundary")
