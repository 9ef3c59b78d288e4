"""Reading files uebench did not write (datasets, released poisons) without trusting what they say about themselves.

Every size a file declares (an .npy header, a zip member, a pickled array's shape) is checked against the file's real
size and against a bound the caller derives from the dataset before anything is allocated; only regular files are
opened (a FIFO named `0.png` would block forever); a pickle is parsed opcode by opcode into plain values and numpy
arrays, and nothing it names is ever called (`load_pickle`).
"""

from __future__ import annotations

import io
import math
import os
import pickletools
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from ..core.errors import UserError

MAX_NAME_DIGITS = 18  # an index or a label written in a file name: below 10**18, so it fits an int64


def decimal_name(text: str) -> int | None:
    """The number a file or folder name spells in ASCII digits ('12'), or None: '²', '٣' and a 23-digit name are no
    usable index or label, though str.isdigit() says they are digits."""
    if not (text.isascii() and text.isdecimal()) or len(text) > MAX_NAME_DIGITS:
        return None
    return int(text)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (after symlinks); a FIFO, socket or device is refused without
    blocking on it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
            )
            raise UserError(f"{path} is {kind}, not a regular file; only regular files are read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path) -> None:
    """Refuse `path` unless it is a regular file (what open_regular would open), without opening it."""
    open_regular(path).close()


def read_bounded(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The whole of a regular file that is at most `max_bytes` long (a larger one is refused before it is read)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise UserError(f"{path} is {size:,} bytes, more than {what} can be ({max_bytes:,})")
        data = f.read(size + 1)  # read(n) reserves n bytes first: the file's size, not the bound
    if len(data) > size:
        raise UserError(f"{path} grew while it was read; read it again once it is complete")
    return data


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize  # Python integers: a declared 10**30 does not wrap around


def _plain_dtype(dtype: Any, what: str) -> np.dtype:
    """Numbers only: no objects (they would be pickles), no records, no strings."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype:
        raise UserError(f"{what}: holds {dtype} values; only plain numeric arrays are read")
    return dtype


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise UserError(f"{what}: declares the shape {shape!r:.60}, not a tuple of sizes")
    return shape


def _check_size(nbytes: int, max_bytes: int, shape: tuple[int, ...], what: str) -> None:
    if nbytes > max_bytes:
        raise UserError(
            f"{what}: declares an array of shape {shape} ({nbytes:,} bytes), more than the dataset can take "
            f"({max_bytes:,} bytes)"
        )


# ---- .npy and .npz ------------------------------------------------------------------------------------------------
def read_npy_from(fp: BinaryIO, what: str, max_bytes: int, available: int | None = None) -> np.ndarray:
    """An .npy stream: header first, its declared size checked against `max_bytes` and against the `available`
    bytes of the file, then exactly that many bytes read (never pickled objects)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} is not read")
        header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = header(fp)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot read {what} as .npy: {type(e).__name__}: {str(e)[:120]}") from None
    dtype = _plain_dtype(dtype, what)
    shape = _check_shape(shape, what)
    nbytes = _nbytes(shape, dtype)
    _check_size(nbytes, max_bytes, shape, what)
    start = fp.tell() if available is not None else 0
    if available is not None and available - start != nbytes:
        raise UserError(f"{what}: the header declares {nbytes:,} bytes of data, the file holds {available - start:,}")
    buf = bytearray(nbytes)
    try:
        got = fp.readinto(buf)
    except Exception as e:  # a damaged zip member (bad CRC, truncated stream)
        raise UserError(f"cannot read {what}: {type(e).__name__}: {str(e)[:120]}") from None
    if got != nbytes:
        raise UserError(f"{what}: the header declares {nbytes:,} bytes of data, the file holds {got:,}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | Path, max_bytes: int) -> np.ndarray:
    """An .npy file whose data is at most `max_bytes`, read only after its header says it is."""
    with open_regular(path) as f:
        return read_npy_from(f, str(path), max_bytes, available=os.fstat(f.fileno()).st_size)


def read_npz(
    path: str | Path, choose: Callable[[list[str]], list[str]], max_bytes: Callable[[str], int]
) -> dict[str, np.ndarray]:
    """The members `choose(names)` picks from an .npz, each read only after its header fits `max_bytes(name)`;
    the members not chosen are never inflated (one that would inflate to gigabytes costs nothing)."""
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as z:
            infos = {i.filename.removesuffix(".npy"): i for i in z.infolist() if i.filename.endswith(".npy")}
            out = {}
            for name in choose(sorted(infos)):
                info = infos[name]
                with z.open(info) as member:
                    out[name] = read_npy_from(member, f"{path}: '{name}'", max_bytes(name), available=info.file_size)
            return out
    except UserError:
        raise
    except Exception as e:  # not a zip, a damaged directory
        raise UserError(f"cannot read {path} as .npz: {type(e).__name__}: {str(e)[:120]}") from None


def check_zip(path: str | Path, max_bytes: int, what: str) -> None:
    """A zip archive (torch's format since 1.6) none of whose members declares more than `max_bytes`: what a reader
    would allocate for a member is checked before any reader sees the file."""
    try:
        with open_regular(path) as f:
            if not zipfile.is_zipfile(f):
                raise UserError(
                    f"{path} is not in torch's zip format (torch.save since torch 1.6); load and save it again with a "
                    "recent torch"
                )
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot read {path} as {what}: {type(e).__name__}: {str(e)[:120]}") from None
    big = max(infos, key=lambda i: i.file_size, default=None)
    if big is not None and big.file_size > max_bytes:
        raise UserError(
            f"{path}: its member {big.filename} declares {big.file_size:,} bytes, more than {what} for this dataset "
            f"can hold ({max_bytes:,})"
        )


# ---- pickles ------------------------------------------------------------------------------------------------------
# The globals a pickle of numpy arrays names, and what each becomes here. Anything else is refused, by name.
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",  # how Python 3 pickles bytes at protocol 2
}
_DTYPE_SPEC = re.compile(r"^[biuf][1-8]$")
# Opcodes one pickle may hold: a CIFAR-100 batch (50,000 labels and file names) has about 200,000; a file of nothing
# but one-byte list openers would otherwise build millions of objects per megabyte
MAX_OPCODES = 5_000_000


class _Global(str):
    """A global the pickle named: a tag, never the object itself."""


class _Array:
    """np.ndarray as `_reconstruct` makes it: nothing allocated until BUILD gives its shape and its bytes."""


class _Dtype:
    def __init__(self, spec: str) -> None:
        self.spec, self.order = spec, "|"

    def get(self, what: str) -> np.dtype:
        dtype = np.dtype(self.spec)
        return dtype.newbyteorder(self.order) if self.order in "<>" and dtype.itemsize > 1 else dtype


def _array(shape: Any, dtype: Any, data: Any, fortran: bool, what: str, max_bytes: int) -> np.ndarray:
    shape = _check_shape(tuple(shape) if isinstance(shape, (list, tuple)) else shape, what)
    if not isinstance(dtype, _Dtype):
        raise UserError(f"{what}: an array without a numeric dtype")
    dtype = _plain_dtype(dtype.get(what), what)
    nbytes = _nbytes(shape, dtype)
    _check_size(nbytes, max_bytes, shape, what)
    if not isinstance(data, (bytes, bytearray)) or len(data) != nbytes:
        got = f"{len(data):,} bytes" if isinstance(data, (bytes, bytearray)) else type(data).__name__
        raise UserError(f"{what}: an array of shape {shape} ({nbytes:,} bytes) with {got} of data")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def load_pickle(data: bytes, what: str, max_bytes: int) -> Any:
    """What a pickle of plain values and numpy arrays holds, parsed without unpickling: dicts, lists, tuples, numbers,
    strings, bytes (Python 2 strings read as bytes, as pickle's encoding='bytes'), and arrays of numbers of at most
    `max_bytes` each, built only once their shape, dtype and data agree. A pickle naming anything else (a function,
    a class) is refused with its name; nothing a pickle names is ever imported or called."""
    try:
        return _run(data, what, max_bytes)
    except UserError:
        raise
    except Exception as e:  # truncated, a bad opcode, a memo that points nowhere
        raise UserError(f"cannot read {what} as a pickle: {type(e).__name__}: {str(e)[:120]}") from None


def _run(data: bytes, what: str, max_bytes: int) -> Any:
    stack: list[Any] = []
    marks: list[int] = []  # where each open MARK sits on the stack
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        i = marks.pop()
        items = stack[i:]
        del stack[i:]
        return items

    for count, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
        if count >= MAX_OPCODES:
            raise UserError(f"{what}: the pickle holds more than {MAX_OPCODES:,} items; not a file of arrays")
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise ValueError("the stack does not end with one value")
            if isinstance(stack[0], (_Array, _Dtype, _Global)):
                raise UserError(f"{what}: the pickle holds an unfinished numpy object (an array without its data)")
            return stack[0]
        if name == "MARK":
            marks.append(len(stack))
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
            stack.append(arg)
        elif name in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
            stack.append(arg)
        elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):  # Python 2 str: bytes (pickle's encoding='bytes')
            stack.append(arg.encode("latin-1"))
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            stack.append(bytes(arg))
        elif name == "BYTEARRAY8":
            stack.append(bytearray(arg))
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE"):
            stack.append({"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple}[name]())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name == "APPEND":
            value = stack.pop()
            stack[-1].append(value)
        elif name == "APPENDS":
            items = pop_mark()
            stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif name == "SETITEMS":
            items = pop_mark()
            stack[-1].update(zip(items[::2], items[1::2]))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
            else:
                attr, module = stack.pop(), stack.pop()
            tag = _GLOBALS.get((module, attr))
            if tag is None:
                raise UserError(
                    f"{what}: the pickle asks for {module}.{attr}; only numpy arrays are read from a pickle"
                )
            stack.append(_Global(tag))
        elif name == "REDUCE":
            args = stack.pop()
            stack[-1] = _reduce(stack[-1], args, what, max_bytes)
        elif name == "BUILD":
            state = stack.pop()
            stack[-1] = _build(stack[-1], state, what, max_bytes)
        else:  # objects, sets, extension codes, persistent ids, out-of-band buffers
            raise UserError(f"{what}: the pickle uses {name}; only numpy arrays and plain values are read from it")
    raise ValueError("no STOP opcode")


def _reduce(fn: Any, args: Any, what: str, max_bytes: int) -> Any:
    if not isinstance(fn, _Global) or not isinstance(args, tuple):
        raise UserError(f"{what}: the pickle calls something other than numpy's array constructors")
    if fn == "encode" and len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    if fn == "dtype" and args and isinstance(args[0], str) and _DTYPE_SPEC.match(args[0]):
        return _Dtype(args[0])
    if fn == "reconstruct" and len(args) == 3 and args[0] == "ndarray":
        return _Array()  # the shape given here is a placeholder numpy would allocate: it is ignored
    if fn == "frombuffer" and len(args) == 4:
        buf, dtype, shape, order = args
        return _array(shape, dtype, buf, order == "F", what, max_bytes)
    raise UserError(f"{what}: the pickle holds something other than numpy arrays of numbers ({fn}{args!r:.40})")


def _build(obj: Any, state: Any, what: str, max_bytes: int) -> Any:
    if isinstance(obj, _Dtype) and isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
        obj.order = state[1]
        return obj
    if isinstance(obj, _Array) and isinstance(state, tuple) and len(state) in (4, 5):
        shape, dtype, fortran, data = state[-4:]
        return _array(shape, dtype, data, bool(fortran), what, max_bytes)
    raise UserError(f"{what}: the pickle sets the state of something other than a numpy array")


# ---- MATLAB v5 .mat files (SVHN) ----------------------------------------------------------------------------------
MAT_COMPRESSED = 15  # miCOMPRESSED: a zlib stream holding one miMATRIX element


def mat_v5_uncompressed(data: bytes, what: str, max_bytes: int) -> bytes:
    """A MATLAB v5 file's bytes with every compressed element inflated, at most `max_bytes` in all: what scipy's reader
    then reads from memory, where no size it finds in a tag can make it read (or allocate) more than is there. A
    zlib stream that inflates past the bound (a zip bomb) is refused while it inflates."""
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise UserError(f"{what} is not a MATLAB v5 .mat file")
    order = "<" if data[126:128] == b"IM" else ">"
    out, total, pos = [data[:128]], 128, 128
    while pos < len(data):
        if pos + 8 > len(data):
            raise UserError(f"{what} is truncated (an element's tag is cut off)")
        kind, nbytes = struct.unpack(order + "II", data[pos : pos + 8])
        end = pos + 8 + nbytes
        if end > len(data):
            raise UserError(f"{what} is truncated (an element declares {nbytes:,} bytes past the end)")
        if kind == MAT_COMPRESSED:
            inflate = zlib.decompressobj()
            try:
                part = inflate.decompress(data[pos + 8 : end], max_bytes - total + 1)
            except zlib.error as e:
                raise UserError(f"{what} holds a damaged compressed element ({e})") from None
        else:
            part = data[pos:end]
        total += len(part)
        if total > max_bytes:
            raise UserError(f"{what} inflates to more than {max_bytes:,} bytes")
        out.append(part)
        pos = end
    return b"".join(out)
