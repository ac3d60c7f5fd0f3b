"""ctypes layer over attnccl's C API (include/attnccl.h); needs no torch and no compiler.

Why ctypes and not a C extension: the C API is plain C with size/magic/version-prefixed structs,
made to be called across an ABI boundary, so ctypes reaches it without a compile step against a
particular Python or PyTorch (Debian's python3-torch has no matching extension toolchain set-up
to rely on). A call costs a few microseconds, nothing next to an attention collective, and ctypes
releases the GIL during the call, so other Python threads keep running.

The library is found, in order: the `path` given to load_library(), the ATTNCCL_LIBRARY
environment variable (a file), a libattnccl.so next to this package (a wheel or an install that
copied it there), the source checkout's build tree (build/libattnccl.so beside python/, for an
editable install), ctypes.util.find_library("attnccl"), then "libattnccl.so.0".

The 0.2 calls (attncclAttnForwardEx / BackwardEx: batch, strides, sinks) are used where the loaded
library exports them (has_ex()); the torch layer falls back to the 0.1 calls otherwise.
"""
import ctypes
import ctypes.util
import glob
import os

UNIQUE_ID_BYTES = 128
CONFIG_MAGIC = 0xA77CC1C0
DESC_MAGIC = 0xA77D35C0
CONFIG_UNDEF_INT = -2147483648
DEVICE_CPU = -1

RESULTS = ["success", "unhandled cuda error", "system error", "internal error", "invalid argument",
           "invalid usage", "remote error", "in progress", "timeout", "not supported"]
DTYPES = {"int8": 0, "uint8": 1, "int32": 2, "int64": 3, "float16": 4, "bfloat16": 5, "float32": 6,
          "float64": 7}
LAYOUTS = {"contiguous": 0, "zigzag": 1, "striped": 2}
ALGOS = {"auto": 0, "ring": 1, "passq": 2, "allgather": 3, "ulysses": 4, "hybrid": 5}


class AttncclError(RuntimeError):
    """A failing attnccl call: .result is the attncclResult_t, the message the library's detail."""

    def __init__(self, call, result, detail):
        self.result = result
        name = RESULTS[result] if 0 <= result < len(RESULTS) else "result %d" % result
        super().__init__("%s failed: %s: %s" % (call, name, detail))


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * UNIQUE_ID_BYTES)]


class _Config(ctypes.Structure):
    # attncclConfig_t of header 0.1.0; the size field lets a newer library read it correctly.
    _fields_ = [("size", ctypes.c_size_t), ("magic", ctypes.c_uint), ("version", ctypes.c_uint),
                ("device", ctypes.c_int), ("blocking", ctypes.c_int), ("timeoutMs", ctypes.c_int),
                ("cpuThreads", ctypes.c_int), ("transport", ctypes.c_char_p),
                ("hybridGroupSize", ctypes.c_int)]


_P_ = ctypes.c_void_p


class _Desc(ctypes.Structure):
    # attncclAttnDesc_t of header 0.1.0 (C enums are ints).
    _fields_ = [("size", ctypes.c_size_t), ("magic", ctypes.c_uint), ("version", ctypes.c_uint),
                ("dtype", ctypes.c_int), ("seqLen", ctypes.c_int64), ("numHeadsQ", ctypes.c_int),
                ("numHeadsKV", ctypes.c_int), ("headDim", ctypes.c_int), ("layout", ctypes.c_int),
                ("causal", ctypes.c_int), ("windowLeft", ctypes.c_int64), ("windowRight", ctypes.c_int64),
                ("softmaxScale", ctypes.c_float), ("numSeqs", ctypes.c_int64),
                ("cuSeqlens", ctypes.POINTER(ctypes.c_int64)),
                # 0.2: the library reads `batch` only from a descriptor whose size reaches it.
                ("batch", ctypes.c_int64)]


class Strides(ctypes.Structure):
    # attncclStrides_t: element strides of a [batch][T_local][H][D] view; all 0 = contiguous.
    _fields_ = [("batch", ctypes.c_int64), ("token", ctypes.c_int64), ("head", ctypes.c_int64)]


TENSORS_MAGIC = 0xA77E75C0


class Tensors(ctypes.Structure):
    # attncclAttnTensors_t of header 0.2.0.
    _fields_ = [("size", ctypes.c_size_t), ("magic", ctypes.c_uint), ("version", ctypes.c_uint),
                ("q", _P_), ("k", _P_), ("v", _P_), ("out", _P_), ("lse", _P_), ("dout", _P_),
                ("dq", _P_), ("dk", _P_), ("dv", _P_), ("sinks", _P_), ("dsinks", _P_)] + \
               [(n + "Strides", Strides) for n in ("q", "k", "v", "out", "dout", "dq", "dk", "dv", "lse")]


_lib = None
_P = ctypes.c_void_p  # every tensor, the communicator and the stream travel as void*


def _declare(lib):
    i, res = ctypes.c_int, ctypes.c_int
    sigs = {
        "attncclGetErrorString": (ctypes.c_char_p, [i]),
        "attncclGetLastError": (ctypes.c_char_p, [_P]),
        "attncclGetVersion": (res, [ctypes.POINTER(i)]),
        "attncclGetUniqueId": (res, [ctypes.POINTER(UniqueId)]),
        "attncclCommInitRank": (res, [ctypes.POINTER(_P), i, UniqueId, i, ctypes.POINTER(_Config)]),
        "attncclCommDestroy": (res, [_P]),
        "attncclCommCount": (res, [_P, ctypes.POINTER(i)]),
        "attncclCommUserRank": (res, [_P, ctypes.POINTER(i)]),
        "attncclAlgoName": (ctypes.c_char_p, [i]),
        "attncclAttnLocalTokens": (res, [ctypes.POINTER(_Desc), i, i, ctypes.POINTER(ctypes.c_int64),
                                         ctypes.POINTER(ctypes.c_int64)]),
        "attncclAttnForward": (res, [_P, _P, _P, _P, _P, ctypes.POINTER(_Desc), i, _P, _P]),
        "attncclAttnBackward": (res, [_P, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.POINTER(_Desc), i, _P, _P]),
        "attncclAllReduce": (res, [_P, _P, ctypes.c_size_t, i, i, _P, _P]),
        "attncclAllGather": (res, [_P, _P, ctypes.c_size_t, i, _P, _P]),
    }
    optional = {  # 0.2: present once the library implements them
        "attncclAttnForwardEx": (res, [ctypes.POINTER(Tensors), ctypes.POINTER(_Desc), i, _P, _P]),
        "attncclAttnBackwardEx": (res, [ctypes.POINTER(Tensors), ctypes.POINTER(_Desc), i, _P, _P]),
    }
    for name, (restype, argtypes) in list(sigs.items()) + list(optional.items()):
        if name in optional and not hasattr(lib, name):
            continue
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


def _package_candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sorted(glob.glob(os.path.join(here, "libattnccl.so*")))
    # python/attnccl/ of a source checkout: the library of its build tree(s); BUILD_DIR, when set,
    # before the default build/ (a checkout may hold several trees).
    root = os.path.dirname(os.path.dirname(here))
    for build in (os.environ.get("BUILD_DIR", ""), "build"):
        if build:
            out.append(os.path.join(root, build, "libattnccl.so"))
    return [c for c in out if os.path.exists(c)]


def has_ex():
    """True when the loaded library has the 0.2 framework-tensor calls (batch, strides, sinks)."""
    return hasattr(load_library(), "attncclAttnForwardEx") and os.environ.get("ATTNCCL_PY_NO_EX") != "1"


def load_library(path=None):
    """Loads libattnccl.so (once per process) and returns the ctypes handle."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    candidates = [path, os.environ.get("ATTNCCL_LIBRARY")] + _package_candidates() + \
        [ctypes.util.find_library("attnccl"), "libattnccl.so.0"]
    errors = []
    for c in candidates:
        if not c:
            continue
        try:
            lib = ctypes.CDLL(c)
        except OSError as e:
            errors.append("%s: %s" % (c, e))
            continue
        _declare(lib)
        _lib = lib
        return lib
    raise OSError("cannot load libattnccl.so (set ATTNCCL_LIBRARY or pass a path): " + "; ".join(errors))


def _check(call, result):
    if result != 0:
        detail = _lib.attncclGetLastError(None)
        raise AttncclError(call, result, detail.decode() if detail else "")


def version():
    """(major, minor, patch) of the loaded library."""
    v = ctypes.c_int()
    _check("attncclGetVersion", load_library().attncclGetVersion(ctypes.byref(v)))
    return v.value // 10000, v.value // 100 % 100, v.value % 100


def _version_code():
    major, minor, patch = version()
    return major * 10000 + minor * 100 + patch


def unique_id():
    """A fresh communicator id (bytes). The calling process serves the rendezvous: keep it alive
    until every rank has joined."""
    uid = UniqueId()
    _check("attncclGetUniqueId", load_library().attncclGetUniqueId(ctypes.byref(uid)))
    return bytes(uid)  # all 128 bytes (uid.internal would stop at the first NUL)


class Communicator:
    """An attnccl communicator (CPU by default). Every rank constructs it with the same id."""

    def __init__(self, nranks, rank, uid, device=DEVICE_CPU, cpu_threads=0, transport=None, timeout_ms=0):
        lib = load_library()
        if len(uid) != UNIQUE_ID_BYTES:
            raise ValueError("unique id must be %d bytes, got %d" % (UNIQUE_ID_BYTES, len(uid)))
        cfg = _Config(ctypes.sizeof(_Config), CONFIG_MAGIC, _version_code(), device, 1, timeout_ms,
                      cpu_threads, transport.encode() if transport else None, CONFIG_UNDEF_INT)
        cid = UniqueId.from_buffer_copy(uid)
        self._handle = _P()
        _check("attncclCommInitRank", lib.attncclCommInitRank(ctypes.byref(self._handle), nranks, cid, rank,
                                                              ctypes.byref(cfg)))
        self.nranks, self.rank = nranks, rank

    @classmethod
    def from_queue(cls, rank, nranks, queue, **config):
        """Rendezvous through a multiprocessing queue shared by the ranks: rank 0 creates the id
        and puts one copy per other rank; the others take one."""
        if rank == 0:
            uid = unique_id()
            for _ in range(nranks - 1):
                queue.put(uid)
        else:
            uid = queue.get()
        return cls(nranks, rank, uid, **config)

    @property
    def handle(self):
        if not self._handle:
            raise ValueError("communicator already destroyed")
        return self._handle

    def destroy(self):
        if self._handle:
            h, self._handle = self._handle, _P()
            _check("attncclCommDestroy", _lib.attncclCommDestroy(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()


class AttnDesc:
    """The attention descriptor without its dtype (taken from the tensors at each call).

    layout: "contiguous", "zigzag" or "striped"; window: (left, right), -1 = unbounded;
    cu_seqlens: document offsets [0, ..., seq_len] or None for one sequence."""

    def __init__(self, seq_len, heads_q, head_dim, heads_kv=None, layout="contiguous", causal=False,
                 window=(-1, -1), softmax_scale=0.0, cu_seqlens=None, batch=1):
        if layout not in LAYOUTS:
            raise ValueError("layout %r: one of %s" % (layout, ", ".join(LAYOUTS)))
        self.seq_len, self.heads_q, self.head_dim = int(seq_len), int(heads_q), int(head_dim)
        self.heads_kv = int(heads_kv if heads_kv is not None else heads_q)
        self.layout, self.causal, self.window = layout, bool(causal), (int(window[0]), int(window[1]))
        self.softmax_scale = float(softmax_scale)
        self.cu_seqlens = [int(x) for x in cu_seqlens] if cu_seqlens is not None else None
        self.batch = int(batch)

    def struct(self, dtype="float32"):
        """The C descriptor; the returned object keeps the cu_seqlens array alive."""
        d = _Desc(ctypes.sizeof(_Desc), DESC_MAGIC, _version_code(), DTYPES[dtype], self.seq_len, self.heads_q,
                  self.heads_kv, self.head_dim, LAYOUTS[self.layout], int(self.causal), self.window[0],
                  self.window[1], self.softmax_scale, 0, None, self.batch)
        if self.cu_seqlens is not None:
            d._offsets = (ctypes.c_int64 * len(self.cu_seqlens))(*self.cu_seqlens)
            d.numSeqs = len(self.cu_seqlens) - 1
            d.cuSeqlens = ctypes.cast(d._offsets, ctypes.POINTER(ctypes.c_int64))
        return d


def local_tokens(desc, nranks, rank):
    """Global positions (a list, increasing) of the tokens rank holds under desc's layout."""
    lib = load_library()
    d = desc.struct()
    n = ctypes.c_int64()
    _check("attncclAttnLocalTokens", lib.attncclAttnLocalTokens(ctypes.byref(d), nranks, rank, ctypes.byref(n), None))
    pos = (ctypes.c_int64 * max(n.value, 1))()
    _check("attncclAttnLocalTokens", lib.attncclAttnLocalTokens(ctypes.byref(d), nranks, rank, ctypes.byref(n), pos))
    return list(pos[:n.value])


def algo_code(algo):
    if algo not in ALGOS:
        raise ValueError("algorithm %r: one of %s" % (algo, ", ".join(ALGOS)))
    return ALGOS[algo]


def attn_forward(comm, desc_struct, algo, q, k, v, out, lse):
    """Raw forward over addresses (ints); lse may be 0 (not wanted)."""
    _check("attncclAttnForward", _lib.attncclAttnForward(q, k, v, out, lse or None, ctypes.byref(desc_struct),
                                                         algo_code(algo), comm.handle, None))


def attn_backward(comm, desc_struct, algo, q, k, v, out, lse, dout, dq, dk, dv):
    """Raw backward over addresses (ints)."""
    _check("attncclAttnBackward", _lib.attncclAttnBackward(q, k, v, out, lse, dout, dq, dk, dv,
                                                           ctypes.byref(desc_struct), algo_code(algo),
                                                           comm.handle, None))


def attn_forward_ex(comm, desc_struct, algo, tensors, stream=None):
    """0.2 forward: tensors is a Tensors struct (q, k, v, out, lse, sinks and their strides);
    stream: a cudaStream_t as an int for a CUDA communicator, None on the CPU."""
    _check("attncclAttnForwardEx", _lib.attncclAttnForwardEx(ctypes.byref(tensors), ctypes.byref(desc_struct),
                                                             algo_code(algo), comm.handle, stream))


def attn_backward_ex(comm, desc_struct, algo, tensors, stream=None):
    _check("attncclAttnBackwardEx", _lib.attncclAttnBackwardEx(ctypes.byref(tensors), ctypes.byref(desc_struct),
                                                               algo_code(algo), comm.handle, stream))


def tensors_struct():
    """An attncclAttnTensors_t as ATTNCCL_ATTN_TENSORS_INITIALIZER leaves it."""
    return Tensors(size=ctypes.sizeof(Tensors), magic=TENSORS_MAGIC, version=_version_code())


def all_reduce_sum(comm, send, recv, count, dtype):
    """recv = sum over ranks of send (addresses; in place when equal)."""
    _check("attncclAllReduce", _lib.attncclAllReduce(send, recv, count, DTYPES[dtype], 0, comm.handle, None))


def all_gather(comm, send, recv, count, dtype):
    """recv = [rank 0's send, rank 1's send, ...] (count elements each)."""
    _check("attncclAllGather", _lib.attncclAllGather(send, recv, count, DTYPES[dtype], comm.handle, None))
