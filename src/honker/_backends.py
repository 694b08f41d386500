"""The event-driven update-watcher backends: ``"kernel"`` (inotify) and ``"shm"`` (WAL index).

Both are :class:`~honker._watcher.UpdateWatcher` subclasses that only override *when* the
watcher reads ``PRAGMA data_version``; subscription management, the thread's life cycle,
fan-out, the dead-man's switch and the ``data_version`` comparison itself are shared with
the polling backend. A wake is therefore always confirmed by ``data_version`` (a rolled-back
transaction never changes it), and a backend's hint can at worst be late, never wrong.

``kernel``
    inotify (through ``ctypes``) on the database's *directory*, so writes to ``-wal`` and
    ``-journal``, checkpoints into the main file, the ``-wal`` being reset or truncated and
    the file being replaced are all reported without this process ever opening the
    database, ``-wal`` or ``-shm`` files. The thread blocks in ``poll()`` on the inotify
    descriptor. A write event can arrive *before* the commit it belongs to is visible (the
    frames are written, then the WAL index is updated; in rollback mode the writer still
    holds its lock for a moment), so every batch of events is checked at once and again
    after ``RECHECK_DELAYS_S``; and ``data_version`` is also read every
    ``IDENTITY_CHECK_S`` (100 ms) on the dead-man's-switch wake-up, so a missed or
    unreportable change (writes through a read-write mmap, network file systems) is
    still seen within 100 ms.

``shm``
    Reads the WAL-index header from ``<db>-shm`` through a read-only ``mmap`` on every tick
    of ``watcher_poll_interval_ms`` (default 1 ms). The header is stored twice (offsets 0
    and 48, 48 bytes each: iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame,
    nPage, aFrameCksum, aSalt, aCksum); SQLite rewrites both on every commit and WAL
    reset. When the copy differs from the last one seen, ``data_version`` is read to
    confirm. When the two copies differ from each other the header is mid-update: the
    tick falls back to ``data_version`` and does not adopt the torn header, so the next
    tick looks again. ``data_version`` is also read every 100 ms as a safety net.

    The descriptor behind the map is opened once per ``-shm`` file per process (shared by
    every ``shm`` Database on that file) and closed only when no other descriptor of the
    file is open in this process any more: closing *any* descriptor of a file drops all of
    the process's POSIX locks on it, including the ones SQLite holds through its own.
"""

from __future__ import annotations

import math
import os
import select
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ._watcher import IDENTITY_CHECK_S, RETRY, UpdateWatcher, file_identity

# -- inotify -------------------------------------------------------------------------------
IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

WATCH_MASK = (
    IN_MODIFY
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_REPLACED = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_DIR_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_EVENT = struct.Struct("iIII")

#: After a batch of relevant inotify events, ``data_version`` is read at once and again this
#: long after the batch (seconds): the commit an event belongs to can become visible a
#: little after its write (WAL-index update, ``fsync`` with ``synchronous=FULL``, the
#: writer's lock release in rollback mode). Later still, the 100 ms safety read covers it.
RECHECK_DELAYS_S = (0.0003, 0.002, 0.01, 0.05)


class _Inotify:
    """The three libc inotify calls, loaded through ``ctypes``."""

    def __init__(self, lib: Any) -> None:
        import ctypes

        self._ctypes = ctypes
        self.init1 = lib.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = lib.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = lib.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int

    def errno(self) -> int:
        return int(self._ctypes.get_errno())


_inotify: _Inotify | None = None
_inotify_error: str | None = None


def _load_inotify() -> _Inotify:
    """The libc inotify functions; ``ValueError`` ("requires the ...") when unavailable."""
    global _inotify, _inotify_error
    if _inotify is not None:
        return _inotify
    if _inotify_error is None:
        if not sys.platform.startswith("linux"):
            _inotify_error = f"Linux inotify API, which {sys.platform!r} does not have"
        else:
            try:
                import ctypes

                lib = ctypes.CDLL(None, use_errno=True)
                _inotify = _Inotify(lib)
                return _inotify
            except ImportError:
                _inotify_error = "ctypes module (to call inotify), which this Python lacks"
            except (OSError, AttributeError) as exc:
                _inotify_error = f"inotify functions in the C library, which are missing ({exc})"
    raise ValueError(f"requires the {_inotify_error}")


# File systems on which inotify does not report other hosts' (or the server's) writes, or
# reports them unreliably: the automatic choice polls there.
REMOTE_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "afs",
        "lustre",
        "gpfs",
        "beegfs",
        "virtiofs",
        "vboxsf",
        "sshfs",
    }
)


def _mount_fstype(directory: str) -> str | None:
    """The file system type of the mount holding ``directory`` (from /proc/self/mounts)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = directory == point or directory.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def kernel_unsuitable(path: str) -> str | None:
    """Why the automatic watcher choice should not use inotify for ``path`` (None: it can)."""
    if not sys.platform.startswith("linux"):
        return f"no inotify on {sys.platform}"
    directory = os.path.dirname(os.path.realpath(path))
    fstype = _mount_fstype(directory)
    if fstype is not None and (fstype in REMOTE_FS_TYPES or fstype.startswith("fuse")):
        return f"{directory} is on a {fstype} file system"
    return None


class KernelWatcher(UpdateWatcher):
    """Wakes on inotify events from the database's directory, confirmed by ``data_version``.

    See the module docstring for how a commit whose event raced ahead of its visibility
    is still caught (``RECHECK_DELAYS_S``, 100 ms safety read).
    """

    backend = "kernel"

    def __init__(
        self,
        path: str,
        connect: Callable[[], sqlite3.Connection],
        inotify: _Inotify,
        ifd: int,
    ) -> None:
        super().__init__(path, connect, poll_interval_s=IDENTITY_CHECK_S)
        real = os.path.realpath(path)
        self._dir = os.path.dirname(real)
        base = os.fsencode(os.path.basename(real))
        self._base = base
        self._names = frozenset({base, base + b"-wal", base + b"-shm", base + b"-journal"})
        self._in = inotify
        self._ifd = ifd
        self._wd: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(ifd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._rechecks: list[float] = []
        self._fds_open = True
        self._event_wait = self._wait_for_events

    @classmethod
    def probe(
        cls, requested: str | None, path: str, connect: Callable[[], sqlite3.Connection]
    ) -> KernelWatcher:
        """Check inotify works for ``path``'s directory and build the watcher."""
        try:
            inotify = _load_inotify()
        except ValueError as exc:
            raise ValueError(f"watcher_backend {requested!r} {exc}") from None
        ifd = inotify.init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if ifd < 0:
            err = inotify.errno()
            raise ValueError(
                f"watcher_backend {requested!r} requires the Linux inotify API, "
                f"but inotify_init1 failed: {os.strerror(err)} (errno {err})"
            )
        directory = os.path.dirname(os.path.realpath(path))
        wd = inotify.add_watch(ifd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            err = inotify.errno()
            os.close(ifd)
            raise RuntimeError(
                f"watcher_backend probe failed: cannot watch directory {directory!r} "
                f"with inotify: {os.strerror(err)} (errno {err})"
            )
        inotify.rm_watch(ifd, wd)
        try:
            return cls(path, connect, inotify, ifd)
        except BaseException:
            os.close(ifd)
            raise

    # -- hooks ---------------------------------------------------------------------------
    def _on_start(self) -> None:
        # Drop stale events, arm the watch, then (in the caller) read the baseline. A
        # commit racing with this is in the baseline, or reported, or caught by the
        # rechecks armed here as if an event had just arrived.
        self._drain()
        self._wd = None
        self._rewatch()  # failing that, retried on every 100 ms safety read
        now = time.monotonic()
        self._rechecks = [now + d for d in RECHECK_DELAYS_S]

    def _on_stop(self) -> None:
        wd, self._wd = self._wd, None
        if wd is not None and self._fds_open:
            self._in.rm_watch(self._ifd, wd)

    def _wait_for_events(self, next_identity: float) -> bool:
        now = time.monotonic()
        due = next_identity
        rechecks = self._rechecks
        if rechecks and rechecks[0] < due:
            due = rechecks[0]
        timeout = due - now
        if 0 < timeout < 0.001:
            # poll() counts in whole milliseconds: sleep a sub-millisecond recheck delay
            # instead (events arriving meanwhile stay queued for the next pass).
            time.sleep(timeout)
            timeout = 0
        check = False
        for fd, _ in self._poller.poll(max(0, math.ceil(timeout * 1000.0))):
            if fd == self._ifd:
                if self._drain():
                    check = True
                    now = time.monotonic()
                    self._rechecks = rechecks = [now + d for d in RECHECK_DELAYS_S]
            else:
                try:
                    os.read(self._wake_r, 64)
                except OSError:
                    pass
        now = time.monotonic()
        if rechecks and rechecks[0] <= now:
            while rechecks and rechecks[0] <= now:
                rechecks.pop(0)
            check = True
        if now >= next_identity:
            check = True  # the 100 ms safety read, on the dead-man's-switch wake-up
            if self._wd is None:
                self._rewatch()
        return check

    def _rewatch(self) -> None:
        """Try to (re-)add the directory watch; until it works, the safety reads carry on."""
        wd = self._in.add_watch(self._ifd, os.fsencode(self._dir), WATCH_MASK)
        if wd >= 0:
            self._wd = wd
            self._rechecks = [time.monotonic() + d for d in RECHECK_DELAYS_S]

    def _drain(self) -> bool:
        """Read every queued event; whether any concerns the database's files."""
        relevant = False
        names = self._names
        base = self._base
        unpack = _EVENT.unpack_from
        size = _EVENT.size
        while True:
            try:
                buf = os.read(self._ifd, 65536)
            except BlockingIOError:
                return relevant
            except OSError:
                return True
            if not buf:
                return relevant
            offset = 0
            end = len(buf)
            while offset + size <= end:
                wd, mask, _cookie, length = unpack(buf, offset)
                name = buf[offset + size : offset + size + length].split(b"\0", 1)[0]
                offset += size + length
                if mask & IN_Q_OVERFLOW:
                    relevant = True  # events were lost: read data_version to be sure
                    self._identity_due = True
                elif mask & _DIR_GONE and not name:
                    if mask & IN_IGNORED and wd == self._wd:
                        self._wd = None
                    relevant = True
                    self._identity_due = True
                elif name in names:
                    relevant = True
                    if name == base and mask & _REPLACED:
                        self._identity_due = True

    def _interrupt(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _release_runtime(self) -> None:
        # Neither descriptor belongs to a database file: closing them drops no locks.
        if self._fds_open:
            self._fds_open = False
            self._wd = None
            for fd in (self._ifd, self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass


# -- shm -----------------------------------------------------------------------------------
HEADER_COPY = 48  # one WalIndexHdr
HEADER_BYTES = 2 * HEADER_COPY  # both copies
MAP_BYTES = 136  # both copies + WalCkptInfo: the fixed start of every -shm file
REAP_INTERVAL_S = 0.5


class _Mmap:
    """libc ``mmap``/``munmap`` through ``ctypes``.

    Python's ``mmap.mmap`` duplicates the descriptor it is given and closes the duplicate
    when the map is closed or collected, which would drop this process's POSIX locks on
    the ``-shm`` file at an uncontrolled moment; mapping through libc keeps exactly one
    descriptor whose closing this module controls.
    """

    def __init__(self) -> None:
        import ctypes
        import mmap

        lib = ctypes.CDLL(None, use_errno=True)
        self._ctypes = ctypes
        self._mmap = lib.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self._munmap = lib.munmap
        self._munmap.restype = ctypes.c_int
        self._munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._prot = mmap.PROT_READ
        self._flags = mmap.MAP_SHARED
        self._failed = ctypes.c_void_p(-1).value
        self.string_at = ctypes.string_at

    def map(self, fd: int, length: int) -> int:
        addr = self._mmap(None, length, self._prot, self._flags, fd, 0)
        if addr is None or addr == self._failed:
            err = self._ctypes.get_errno()
            raise OSError(err, f"mmap failed: {os.strerror(err)}")
        return int(addr)

    def unmap(self, addr: int, length: int) -> None:
        self._munmap(addr, length)


_mm: _Mmap | None = None
_mm_error: str | None = None


def _load_mmap() -> _Mmap:
    global _mm, _mm_error
    if _mm is not None:
        return _mm
    if _mm_error is None:
        if os.name != "posix":
            _mm_error = f"POSIX mmap of the -shm file, which {sys.platform!r} does not offer"
        else:
            try:
                _mm = _Mmap()
                return _mm
            except ImportError:
                _mm_error = "ctypes module (to map the -shm file), which this Python lacks"
            except (OSError, AttributeError, TypeError) as exc:
                _mm_error = f"mmap function in the C library, which is missing ({exc})"
    raise ValueError(f"requires the {_mm_error}")


class _ShmMap:
    """One read-only map of a ``-shm`` file, shared by every ``shm`` watcher on it."""

    __slots__ = ("addr", "fd", "identity", "path", "refs")

    def __init__(self, path: str, fd: int, identity: tuple[int, int]) -> None:
        self.path = path
        self.fd = fd
        self.identity = identity
        self.addr: int | None = None
        self.refs = 0

    def read(self) -> bytes:
        """Both WAL-index header copies (96 bytes)."""
        assert _mm is not None and self.addr is not None
        return _mm.string_at(self.addr, HEADER_BYTES)


_maps: dict[tuple[int, int], _ShmMap] = {}
_doomed: list[_ShmMap] = []  # released, closed once no other descriptor of the file is open
_maps_lock = threading.Lock()
_reaper: threading.Thread | None = None


def acquire_map(path: str) -> _ShmMap:
    """The process-wide map of ``path`` (a ``-shm`` file), opened on first use.

    ``FileNotFoundError`` when the file does not exist; other ``OSError`` when it cannot be
    opened or mapped (the descriptor, if any, is then left to the reaper: see module doc).
    """
    mm = _load_mmap()
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    with _maps_lock:
        shm = _maps.get(key)
        if shm is None:
            for i, doomed in enumerate(_doomed):
                if doomed.identity == key and doomed.addr is not None:
                    shm = _doomed.pop(i)
                    _maps[key] = shm
                    break
        if shm is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            fst = os.fstat(fd)
            shm = _ShmMap(path, fd, (fst.st_dev, fst.st_ino))
            try:
                if fst.st_size < MAP_BYTES:
                    raise OSError(
                        f"{path!r} is {fst.st_size} bytes, smaller than a WAL-index header"
                    )
                shm.addr = mm.map(fd, MAP_BYTES)
            except OSError:
                _doomed.append(shm)  # never close() here: SQLite holds locks on this file
                _reap_locked()
                _start_reaper_locked()
                raise
            _maps[shm.identity] = shm
        shm.refs += 1
        return shm


def release_map(shm: _ShmMap) -> None:
    """Drop one reference; the last one schedules the close (see module docstring)."""
    with _maps_lock:
        shm.refs -= 1
        if shm.refs > 0:
            return
        if _maps.get(shm.identity) is shm:
            del _maps[shm.identity]
        _doomed.append(shm)
        _reap_locked()
        _start_reaper_locked()


def other_descriptors(fd: int, identity: tuple[int, int]) -> bool | None:
    """Whether this process has a descriptor other than ``fd`` on the file ``identity``.

    ``None`` when the platform offers no way to tell (no ``/proc/self/fd`` or ``/dev/fd``).
    Only ``stat``s the descriptor links; opens nothing.
    """
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        mine = str(fd)
        for name in names:
            if name == mine:
                continue
            try:
                st = os.stat(f"{directory}/{name}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == identity:
                return True
        return False
    return None


def _reap_locked() -> None:
    keep = []
    for shm in _doomed:
        if other_descriptors(shm.fd, shm.identity):
            keep.append(shm)
            continue
        if shm.addr is not None and _mm is not None:
            _mm.unmap(shm.addr, MAP_BYTES)
            shm.addr = None
        try:
            os.close(shm.fd)
        except OSError:
            pass
    _doomed[:] = keep


def _start_reaper_locked() -> None:
    global _reaper
    if not _doomed or _reaper is not None:
        return
    _reaper = threading.Thread(target=_reap_loop, name="honker-shm-reaper", daemon=True)
    _reaper.start()


def _reap_loop() -> None:
    global _reaper
    while True:
        time.sleep(REAP_INTERVAL_S)
        with _maps_lock:
            try:
                _reap_locked()
            except Exception:  # never let a stat race kill the reaper
                pass
            if not _doomed:
                _reaper = None
                return


class ShmWatcher(UpdateWatcher):
    """Polls the WAL-index header through a read-only ``mmap`` of ``-shm``.

    Each tick (``watcher_poll_interval_ms``) costs a 96-byte memory read; ``data_version``
    is read only when the header changed, was caught mid-update, or every 100 ms.
    """

    backend = "shm"

    def __init__(
        self,
        path: str,
        connect: Callable[[], sqlite3.Connection],
        poll_interval_s: float,
        conn: sqlite3.Connection,
        shm: _ShmMap,
        shm_path: str,
    ) -> None:
        super().__init__(path, connect, poll_interval_s=poll_interval_s)
        self._conn = conn
        self._shm: _ShmMap | None = shm
        self._shm_path = shm_path
        self._header = b""
        self._candidate: bytes | None = None
        self._tick_hint = self._header_changed
        self._after_check = self._adopt_header

    @classmethod
    def probe(
        cls,
        requested: str | None,
        path: str,
        connect: Callable[[], sqlite3.Connection],
        poll_interval_s: float,
    ) -> ShmWatcher:
        """Check the database is in WAL mode with a ``-shm`` file, map it, build the watcher."""
        try:
            _load_mmap()
        except ValueError as exc:
            raise ValueError(f"watcher_backend {requested!r} {exc}") from None
        try:
            conn = connect()
        except sqlite3.Error as exc:
            raise RuntimeError(f"watcher_backend probe failed: {exc}: {path!r}") from None
        try:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            except sqlite3.Error as exc:
                raise RuntimeError(f"watcher_backend probe failed: {exc}: {path!r}") from None
            if mode != "wal":
                raise ValueError(
                    f"watcher_backend {requested!r} requires the WAL journal mode, "
                    f"but {path!r} is in {mode!r} mode"
                )
            shm_path = os.path.realpath(path) + "-shm"
            try:
                shm = acquire_map(shm_path)
            except FileNotFoundError:
                raise ValueError(
                    f"watcher_backend {requested!r} requires the WAL-index file "
                    f"{shm_path!r}, which does not exist"
                ) from None
            except OSError as exc:
                raise RuntimeError(
                    f"watcher_backend probe failed: cannot map {shm_path!r}: {exc}"
                ) from None
        except BaseException:
            conn.close()
            raise
        return cls(path, connect, poll_interval_s, conn, shm, shm_path)

    # -- hooks ---------------------------------------------------------------------------
    def _on_start(self) -> None:
        assert self._shm is not None
        self._header = self._shm.read()  # snapshot before the baseline read
        self._candidate = None

    def _header_changed(self, next_identity: float) -> bool:
        shm = self._shm
        if shm is None:
            return True
        header = shm.read()
        if header != self._header:
            # Adopt it only once it is consistent (both copies equal) and data_version was
            # read without a transient error; a torn header is looked at again next tick.
            stable = header[:HEADER_COPY] == header[HEADER_COPY:]
            self._candidate = header if stable else None
            return True
        if time.monotonic() >= next_identity:
            self._candidate = None
            return True  # the 100 ms safety read, on the dead-man's-switch tick
        return False

    def _adopt_header(self, result: int) -> None:
        if self._candidate is not None and result != RETRY:
            self._header = self._candidate
        self._candidate = None

    def _identity_ok(self) -> bool:
        if not super()._identity_ok():
            return False
        shm = self._shm
        return shm is None or file_identity(self._shm_path) == shm.identity

    def release_files(self) -> None:
        """Give back this watcher's share of the ``-shm`` map (after connections closed)."""
        self._when_thread_done(self._release_map)

    def _release_map(self) -> None:
        shm, self._shm = self._shm, None
        if shm is not None:
            release_map(shm)
