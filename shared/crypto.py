"""Chunked AES-256-GCM envelope encryption for files and streams of any size.

Format (version 1)::

    header  = magic "AIDP" | version u8 | flags u8 | chunk_size u32 | nonce_prefix 7B
              | len(key_name) u16 | len(wrapped_key) u16 | key_name utf-8 | wrapped_key utf-8
    body    = chunk_0 | chunk_1 | ... | chunk_n      (each = AES-GCM ciphertext ‖ 16-byte tag)

- Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds
  1..chunk_size bytes (0 only when the whole plaintext is empty: there is always a last chunk).
- ``nonce = nonce_prefix (7) ‖ counter (u32 BE) ‖ last-chunk flag (u8)``, so dropping,
  reordering or truncating chunks fails authentication, and so does appending data.
- The serialised header is the associated data of every chunk: any change to it (key name,
  wrapped key, chunk size, prefix) fails authentication.
- With ``FLAG_BINDS_SHA256`` the final chunk's associated data is ``header ‖ sha256(plaintext)``:
  a reader that knows the expected digest learns that the stream is the content with that
  digest without hashing it again. ``FLAG_BINDS_NAME`` binds a 32-byte keyed name of the
  content instead (the artifact store's ``HMAC-SHA256(naming key, sha256(plaintext))``, see
  :mod:`shared.blob_names`). Such a stream can only be opened with ``expected_digest``
  (the bound value, whichever flag).
- The data key (32 bytes) is generated and wrapped by a :class:`~shared.secrets.KeyService`;
  only the wrapped form and the key-encryption key's name are stored.

Decryption releases a chunk's plaintext only after that chunk's tag verified; an error
raises :class:`IntegrityError` (never a partial, unverified chunk). Writes to files are
atomic: a temp file in the destination's directory, fsync, rename.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import AidpError, TransientError

__all__ = [
    "CHUNK_SIZE",
    "FLAG_BINDS_NAME",
    "FLAG_BINDS_SHA256",
    "FORMAT_VERSION",
    "MAGIC",
    "TAG_SIZE",
    "EncryptResult",
    "Header",
    "IntegrityError",
    "KeyUnwrapError",
    "atomic_writer",
    "decrypt_buffer",
    "decrypt_file",
    "decrypt_stream",
    "decrypt_to",
    "encrypt_file",
    "encrypt_stream",
    "plaintext_size",
    "read_header",
]

MAGIC = b"AIDP"
FORMAT_VERSION = 1
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
FLAG_BINDS_SHA256 = 0x01
FLAG_BINDS_NAME = 0x02
_BINDS = FLAG_BINDS_SHA256 | FLAG_BINDS_NAME
MAX_CHUNK_SIZE = 16 * 1024 * 1024
_MAX_CHUNKS = 2**32
_FIXED = struct.Struct(">4sBBI7sHH")
_COUNTER = struct.Struct(">IB")
_READ_BLOCK = 1024 * 1024
_HASH_AHEAD = 4  # blocks queued for the hash thread at most (pipelined encrypt_reader)

Unwrap = Callable[[str, str], bytes]
"""``unwrap(key_name, wrapped_key) -> data key``, e.g. ``KeyService.decrypt_data_key``."""


class IntegrityError(AidpError):
    """Ciphertext, header or content digest failed verification (corrupt or tampered)."""

    code = "integrity_error"
    status = 500
    retryable = True  # the artifact store drops the bad blob, so a retry can re-fetch it


class KeyUnwrapError(IntegrityError):
    """The wrapped data key could not be unwrapped: tampered header or wrong key service.

    Kept apart because it may also mean a misconfigured key service, so callers should not
    treat the ciphertext itself as proven corrupt.
    """


@dataclass(frozen=True)
class Header:
    """A parsed header; ``raw`` is its exact serialisation (the associated data)."""

    version: int
    flags: int
    chunk_size: int
    nonce_prefix: bytes
    key_name: str
    wrapped_key: str
    raw: bytes

    @classmethod
    def new(
        cls, *, key_name: str, wrapped_key: str, chunk_size: int = CHUNK_SIZE, flags: int = 0
    ) -> Header:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}")
        name_b, wrapped_b = key_name.encode(), wrapped_key.encode()
        if len(name_b) > 0xFFFF or len(wrapped_b) > 0xFFFF:
            raise ValueError("key name or wrapped key too long")
        prefix = os.urandom(NONCE_PREFIX_SIZE)
        raw = (
            _FIXED.pack(
                MAGIC, FORMAT_VERSION, flags, chunk_size, prefix, len(name_b), len(wrapped_b)
            )
            + name_b
            + wrapped_b
        )
        return cls(FORMAT_VERSION, flags, chunk_size, prefix, key_name, wrapped_key, raw)


@dataclass(frozen=True)
class EncryptResult:
    """What an encryption wrote: plaintext ``size``, its ``sha256`` hex (when hashed) and the
    keyed ``name`` hex it binds (with ``name_of``)."""

    size: int
    sha256: str | None
    name: str | None = None


def read_header(inp: IO[bytes]) -> Header:
    """Read and parse the header at the stream's position; IntegrityError if malformed."""
    fixed = _read_exact(inp, _FIXED.size)
    if len(fixed) < _FIXED.size:
        raise IntegrityError("encrypted stream is truncated (incomplete header)")
    magic, version, flags, chunk_size, prefix, name_len, wrapped_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise IntegrityError("not an aidp encrypted stream (bad magic)")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"unsupported encrypted format version {version}")
    if flags & ~_BINDS or flags == _BINDS:
        raise IntegrityError(f"unknown header flags {flags:#x}")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(f"invalid chunk size {chunk_size}")
    rest = _read_exact(inp, name_len + wrapped_len)
    if len(rest) < name_len + wrapped_len:
        raise IntegrityError("encrypted stream is truncated (incomplete header)")
    try:
        key_name = rest[:name_len].decode()
        wrapped_key = rest[name_len:].decode()
    except UnicodeDecodeError as exc:
        raise IntegrityError("corrupt header (key fields are not UTF-8)") from exc
    return Header(version, flags, chunk_size, prefix, key_name, wrapped_key, fixed + rest)


def plaintext_size(encrypted_size: int, header: Header) -> int:
    """Plaintext length of an encrypted stream of ``encrypted_size`` bytes (from its layout)."""
    body = encrypted_size - len(header.raw)
    segment = header.chunk_size + TAG_SIZE
    chunks = max(1, -(-body // segment))
    size = body - chunks * TAG_SIZE
    if size < 0:
        raise IntegrityError("encrypted stream is truncated")
    return size


class _Sealer:
    """Encrypts consecutive chunks into one reused buffer and writes them out."""

    def __init__(self, key: bytes, header: Header, out: IO[bytes]) -> None:
        self._aead = AESGCM(key)
        self._header = header
        self._out = out
        self._buf = bytearray(header.chunk_size + TAG_SIZE)
        self._view = memoryview(self._buf)
        self._counter = 0

    def seal(
        self, piece: bytes | bytearray | memoryview, *, last: bool, digest: bytes = b""
    ) -> None:
        if self._counter >= _MAX_CHUNKS:
            raise ValueError("stream too long for one data key (2**32 chunks)")
        nonce = self._header.nonce_prefix + _COUNTER.pack(self._counter, 1 if last else 0)
        aad = self._header.raw + digest if last else self._header.raw
        n = len(piece) + TAG_SIZE
        self._aead.encrypt_into(nonce, piece, aad, self._view[:n])
        self._out.write(self._view[:n])
        self._counter += 1

    def seal_into(
        self,
        piece: bytes | bytearray | memoryview,
        dest: memoryview,
        *,
        last: bool,
        digest: bytes = b"",
    ) -> int:
        """Like :meth:`seal`, into ``dest`` instead of the output; returns bytes written."""
        if self._counter >= _MAX_CHUNKS:
            raise ValueError("stream too long for one data key (2**32 chunks)")
        nonce = self._header.nonce_prefix + _COUNTER.pack(self._counter, 1 if last else 0)
        aad = self._header.raw + digest if last else self._header.raw
        n = len(piece) + TAG_SIZE
        self._aead.encrypt_into(nonce, piece, aad, dest[:n])
        self._counter += 1
        return n


def _pieces(
    chunks: Iterable[bytes | bytearray | memoryview], size: int
) -> Iterator[tuple[memoryview, bool]]:
    """Regroup arbitrary pieces into ``(view, is_last)`` of exactly ``size`` bytes.

    Only the last may be shorter (empty only when there was no data at all). A view may
    borrow the caller's buffer: it is used before the next pull, except a full piece whose
    lastness is unknown at the end of a caller's chunk, which is copied if not immutable.
    """
    held: memoryview | None = None  # a full piece waiting to learn whether it is the last
    buf = bytearray()
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if not len(view):
            continue
        if held is not None:
            yield held, False
            held = None
        if buf:
            need = size - len(buf)
            buf += view[:need]
            view = view[need:]
            if len(buf) < size:
                continue
            if not len(view):
                held, buf = memoryview(buf), bytearray()
                continue
            yield memoryview(buf), False
            buf = bytearray()
        while len(view) > size:
            yield view[:size], False
            view = view[size:]
        if len(view) == size:
            held = view if isinstance(view.obj, bytes) else memoryview(bytes(view))
        else:
            buf += view
    yield (held if held is not None else memoryview(buf)), True


def encrypt_stream(
    chunks: Iterable[bytes | bytearray | memoryview],
    out: IO[bytes],
    *,
    data_key: bytes,
    wrapped_key: str,
    key_name: str,
    chunk_size: int = CHUNK_SIZE,
    bind_sha256: bool = False,
    hash_sha256: bool = False,
    name_of: Callable[[bytes], bytes] | None = None,
) -> EncryptResult:
    """Encrypt an iterable of plaintext pieces (any sizes) into ``out``.

    ``hash_sha256`` returns the plaintext's sha256; ``bind_sha256`` also binds it into the
    final chunk (see the module docstring) and implies hashing. ``name_of`` (the raw sha256
    -> a 32-byte keyed name) binds that name instead (``FLAG_BINDS_NAME``), also hashing.
    """
    if bind_sha256 and name_of is not None:
        raise ValueError("bind either the sha256 or a keyed name, not both")
    flags = FLAG_BINDS_SHA256 if bind_sha256 else FLAG_BINDS_NAME if name_of else 0
    header = Header.new(
        key_name=key_name, wrapped_key=wrapped_key, chunk_size=chunk_size, flags=flags
    )
    out.write(header.raw)
    sealer = _Sealer(data_key, header, out)
    hasher = hashlib.sha256() if (hash_sha256 or flags) else None
    size = 0
    digest = bound = b""
    for piece, last in _pieces(chunks, chunk_size):
        if hasher is not None:
            hasher.update(piece)
            if last:
                digest, bound = _final_digest(hasher, name_of)
        size += len(piece)
        sealer.seal(piece, last=last, digest=bound if flags else b"")
    return EncryptResult(
        size=size,
        sha256=digest.hex() if hasher is not None else None,
        name=bound.hex() if name_of is not None else None,
    )


def _final_digest(hasher: Any, name_of: Callable[[bytes], bytes] | None) -> tuple[bytes, bytes]:
    """The plaintext's sha256 and what the final chunk binds: that sha256, or the keyed
    name ``name_of`` makes of it (32 bytes)."""
    digest: bytes = hasher.digest()
    bound = name_of(digest) if name_of is not None else digest
    if len(bound) != 32:
        raise ValueError("a bound name must be 32 bytes")
    return digest, bound


def encrypt_reader(
    inp: IO[bytes],
    out: IO[bytes],
    *,
    data_key: bytes,
    wrapped_key: str,
    key_name: str,
    chunk_size: int = CHUNK_SIZE,
    bind_sha256: bool = False,
    hash_sha256: bool = False,
    name_of: Callable[[bytes], bytes] | None = None,
) -> EncryptResult:
    """Like :func:`encrypt_stream` for a readable binary file, pipelined: while this thread
    reads and encrypts blocks (about 1 MiB each), a helper thread hashes them (hashlib
    releases the GIL) and another writes each block's ciphertext in one write. The output
    is byte for byte what :func:`encrypt_stream` would write. A file of one block or less
    is done in this thread (no helper threads)."""
    if bind_sha256 and name_of is not None:
        raise ValueError("bind either the sha256 or a keyed name, not both")
    flags = FLAG_BINDS_SHA256 if bind_sha256 else FLAG_BINDS_NAME if name_of else 0
    block = max(chunk_size, (_READ_BLOCK // chunk_size) * chunk_size)
    header = Header.new(
        key_name=key_name, wrapped_key=wrapped_key, chunk_size=chunk_size, flags=flags
    )
    sealer = _Sealer(data_key, header, out)
    hasher = hashlib.sha256() if (hash_sha256 or flags) else None
    reader = _HashedBlocks(inp, block, hasher)
    digest = bound = b""

    def final_binding() -> bytes:
        """What the final chunk binds, once every block is hashed."""
        nonlocal digest, bound
        if hasher is None:
            return b""
        reader.wait_hashed()
        digest, bound = _final_digest(hasher, name_of)
        return bound if flags else b""

    size = 0
    writer: _BlockWriter | None = None
    out.write(header.raw)
    try:
        pipelined = reader.start()
        writer = _BlockWriter(out, (block // chunk_size) * (chunk_size + TAG_SIZE), pipelined)
        for current, last_block in reader:
            target = writer.buffer()
            filled, offset, n = 0, 0, len(current)
            while True:  # the block's chunks; only the file's very last one binds
                last = last_block and offset + chunk_size >= n
                filled += sealer.seal_into(
                    current[offset : offset + chunk_size],
                    target[filled:],
                    last=last,
                    digest=final_binding() if last else b"",
                )
                offset += chunk_size
                if offset >= n:
                    break
            writer.write(filled)
            size += n
        writer.finish()
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    return EncryptResult(
        size=size,
        sha256=digest.hex() if hasher is not None else None,
        name=bound.hex() if name_of is not None else None,
    )


class _HashedBlocks:
    """A file's blocks read ahead into a ring of buffers, each handed to the hash thread
    as soon as it is read (pipelined :func:`encrypt_reader`).

    Hashing is the slowest stage (sha256 runs at a quarter of AES-GCM's speed), so it sets
    the pace: its one thread (FIFO, so blocks are hashed in order) has the next blocks
    queued before it finishes the current one and never waits for the reader, which waits
    for a hash only to reuse its buffer, or for the final digest."""

    def __init__(self, inp: IO[bytes], block: int, hasher: Any) -> None:
        self._inp, self._block, self._hasher = inp, block, hasher
        self._bufs = [bytearray(block) for _ in range(_HASH_AHEAD + 1)]
        self._hashed: list[Future[None] | None] = [None] * len(self._bufs)
        self._latest: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._n = self._following = 0

    def start(self) -> bool:
        """Read the first two blocks; whether there is more than one (helper threads)."""
        self._n = _readinto_full(self._inp, self._bufs[0])
        if self._n == self._block:
            self._following = _readinto_full(self._inp, self._bufs[1])
        if self._following and self._hasher is not None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="aidp-hash")
        return self._following > 0

    def __iter__(self) -> Iterator[tuple[memoryview, bool]]:
        """``(block, is_last)``, each block queued for hashing; a block's view is valid
        until the next one after it is asked for."""
        index = 0
        while True:
            slot = index % len(self._bufs)
            current = memoryview(self._bufs[slot])[: self._n]
            self._hash(slot, current)
            last = self._following == 0
            yield current, last
            if last:
                return
            index += 1
            self._n, self._following = self._following, 0
            if self._n == self._block:  # read ahead into the buffer after this one
                self._following = self._read_into((index + 1) % len(self._bufs))

    def _hash(self, slot: int, view: memoryview) -> None:
        if self._hasher is None:
            return
        if self._pool is None:
            self._hasher.update(view)
            return
        self._latest = self._hashed[slot] = self._pool.submit(self._hasher.update, view)

    def _read_into(self, slot: int) -> int:
        pending = self._hashed[slot]
        if pending is not None:  # its bytes are still to be hashed
            pending.result()
            self._hashed[slot] = None
        return _readinto_full(self._inp, self._bufs[slot])

    def wait_hashed(self) -> None:
        """Wait until every block handed out is hashed (FIFO: the latest is the last)."""
        if self._latest is not None:
            self._latest.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _BlockWriter:
    """Two ciphertext buffers: one filled by the caller while the other is written, in
    one write, by a helper thread (or, not pipelined, written at once)."""

    def __init__(self, out: IO[bytes], size: int, pipelined: bool) -> None:
        self._out = out
        self._bufs = [bytearray(size) for _ in range(2 if pipelined else 1)]
        self._index = 0
        self._writing: Future[int | None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="aidp-write") if pipelined else None

    def buffer(self) -> memoryview:
        """The buffer to fill next (not being written)."""
        return memoryview(self._bufs[self._index % len(self._bufs)])

    def write(self, filled: int) -> None:
        """Write the first ``filled`` bytes of :meth:`buffer`."""
        view = self.buffer()[:filled]
        self.finish()
        if self._pool is None:
            self._out.write(view)
        else:
            self._writing = self._pool.submit(self._out.write, view)
        self._index += 1

    def finish(self) -> None:
        """Wait for the write under way (its error, if any, is raised here)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _unwrap_key(unwrap: Unwrap, header: Header) -> bytes:
    try:
        key = unwrap(header.key_name, header.wrapped_key)
    except TransientError:
        raise
    except Exception as exc:  # the key service's own error types vary
        raise KeyUnwrapError(
            f"cannot unwrap the data key with key {header.key_name!r}: {type(exc).__name__}"
        ) from exc
    if len(key) != 32:
        raise KeyUnwrapError("unwrapped data key is not 256 bits")
    return key


class _Opener:
    """Verifies and decrypts consecutive chunks of one stream."""

    def __init__(self, header: Header, unwrap: Unwrap, expected_digest: str | None) -> None:
        self.header = header
        self.segment = header.chunk_size + TAG_SIZE
        self._aad_final = header.raw
        if expected_digest is not None:
            if not header.flags & _BINDS:
                raise IntegrityError("stream does not bind a content digest")
            try:
                self._aad_final = header.raw + bytes.fromhex(expected_digest)
            except ValueError as exc:
                raise ValueError("expected_digest must be a hex digest") from exc
        elif header.flags & _BINDS:
            raise IntegrityError("stream binds a content digest: pass expected_digest to open it")
        self._aead = AESGCM(_unwrap_key(unwrap, header))

    def open(self, counter: int, sealed: memoryview, *, last: bool) -> bytes:
        if len(sealed) < TAG_SIZE:
            raise IntegrityError("encrypted stream is truncated")
        nonce = self.header.nonce_prefix + _COUNTER.pack(counter, 1 if last else 0)
        try:
            return self._aead.decrypt(nonce, sealed, self._aad_final if last else self.header.raw)
        except InvalidTag:
            raise IntegrityError(
                f"chunk {counter} failed authentication (corrupt, reordered or truncated)"
            ) from None


def decrypt_stream(
    inp: IO[bytes],
    unwrap: Unwrap,
    *,
    expected_sha256: str | None = None,
    expected_digest: str | None = None,
) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk, each only after its tag verified.

    Raises :class:`IntegrityError` on any tampering, truncation or appended data, and when
    ``expected_digest`` is given but the stream binds a different digest (or none).
    ``expected_sha256`` is its older name.
    """
    opener = _Opener(read_header(inp), unwrap, expected_digest or expected_sha256)
    cur, nxt = bytearray(opener.segment), bytearray(opener.segment)
    n_cur = _readinto_full(inp, cur)
    counter = 0
    while True:
        n_next = _readinto_full(inp, nxt)  # look ahead: the last chunk carries the flag
        last = n_next == 0
        yield opener.open(counter, memoryview(cur)[:n_cur], last=last)
        if last:
            return
        counter += 1
        cur, nxt, n_cur = nxt, cur, n_next


def decrypt_buffer(
    buf: bytes | bytearray | memoryview | mmap.mmap,
    unwrap: Unwrap,
    *,
    expected_sha256: str | None = None,
    expected_digest: str | None = None,
) -> Iterator[bytes]:
    """Like :func:`decrypt_stream` for a whole encrypted stream in memory (or an mmap).

    Decrypts straight from the buffer, without copying the ciphertext.
    """
    view = memoryview(buf).cast("B")
    fixed = bytes(view[: _FIXED.size])
    header_len = _FIXED.size
    if len(fixed) == _FIXED.size:
        name_len, wrapped_len = _FIXED.unpack(fixed)[-2:]
        header_len += name_len + wrapped_len
    header = read_header(io.BytesIO(bytes(view[:header_len])))
    opener = _Opener(header, unwrap, expected_digest or expected_sha256)
    body = view[header_len:]
    size, segment = len(body), opener.segment
    for counter, offset in enumerate(range(0, max(size, 1), segment)):
        last = offset + segment >= size
        yield opener.open(counter, body[offset : offset + segment], last=last)


def decrypt_to(
    inp: IO[bytes], out: IO[bytes], unwrap: Unwrap, *, expected_sha256: str | None = None
) -> int:
    """Decrypt ``inp`` into ``out``; returns the plaintext size."""
    size = 0
    for plain in decrypt_stream(inp, unwrap, expected_sha256=expected_sha256):
        out.write(plain)
        size += len(plain)
    return size


@contextmanager
def atomic_writer(dest: Path) -> Iterator[IO[bytes]]:
    """A temp file next to ``dest``, fsynced and renamed over it only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def encrypt_file(
    src: Path,
    dest: Path,
    *,
    data_key: bytes,
    wrapped_key: str,
    key_name: str,
    chunk_size: int = CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt ``src`` into ``dest`` atomically; returns the plaintext size and sha256."""
    with open(src, "rb", buffering=0) as inp, atomic_writer(dest) as out:
        return encrypt_reader(
            inp,
            out,
            data_key=data_key,
            wrapped_key=wrapped_key,
            key_name=key_name,
            chunk_size=chunk_size,
            hash_sha256=True,
        )


def decrypt_file(
    src: Path, dest: Path, unwrap: Unwrap, *, expected_sha256: str | None = None
) -> int:
    """Decrypt ``src`` into ``dest`` atomically (nothing at ``dest`` unless all verified)."""
    with open(src, "rb", buffering=0) as inp, atomic_writer(dest) as out:
        return decrypt_to(inp, out, unwrap, expected_sha256=expected_sha256)


def _readinto_full(inp: IO[bytes], buf: bytearray) -> int:
    """Fill ``buf`` from ``inp`` unless EOF comes first; returns the bytes read."""
    view = memoryview(buf)
    total = 0
    readinto = getattr(inp, "readinto", None)
    while total < len(buf):
        if readinto is not None:
            n = readinto(view[total:])
        else:
            data = inp.read(len(buf) - total)
            n = len(data)
            view[total : total + n] = data
        if not n:
            break
        total += n
    return total


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    buf = bytearray(n)
    got = _readinto_full(inp, buf)
    return bytes(buf[:got])
