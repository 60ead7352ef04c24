"""On-device gradient/weight statistics with a fixed bucket layout, and their host-side decoding.

The training thread only launches tensor ops here and produces ONE small float64 tensor per
logging step (one row of ``BLOCK`` numbers per parameter); everything that needs Python
objects (decoding, merging ranks, building protos) runs later on the writer thread.

Bucket layout (fixed, 65 buckets, ascending, TensorBoard ``HistogramProto`` convention:
``bucket_limit[i]`` is the right edge of bucket ``i``; the left edge is ``bucket_limit[i-1]``
or ``min`` for the first written bucket):

* one bucket per decade of magnitude, ``|v|`` in ``[1e-20, 1e+10)``: 30 buckets per sign;
* per sign an underflow bucket ``0 < |v| < 1e-20`` and an overflow bucket ``|v| >= 1e+10``
  (``±Inf`` land there);
* an explicit zero bucket ``[0, 5e-324)`` holding exactly the zeros.

A value's decade is found by comparing ``|v|`` with the limits ``10.0**e`` (once per logging
step over all parameters' sampled values together): for float32, bfloat16 and float16 gradients
that is the decade of the exact magnitude (``floor(log10|v|)``, as computed before issue 14);
a float64 value within a few ulps below ``10.0**e`` may differ from that float64 ``log10``
by one bucket. On the negative side a value exactly equal to ``-10^k`` is counted in the decade
``[10^k, 10^(k+1))`` of its magnitude, one bucket to the left of where the HistogramProto
half-open convention would put it (boundary-only difference). NaNs are in no bucket (they are
counted exactly in ``nonfinite``).

Exact per parameter: ``numel``, ``min``, ``max``, ``sum``, ``sum_squares`` (as ``norm**2``),
zero count, non-finite count, weight norm. Bucket counts of tensors with more than
``HIST_SAMPLE`` elements come from a fixed deterministic subsample (golden-ratio Weyl
sequence over the flat index: evenly spread, never aligned with rows or columns, identical
at every step) and are scaled by ``numel / HIST_SAMPLE``; smaller tensors are counted exactly.
The subsample only feeds the buckets: every other field above is exact over the whole tensor.

Cost on CPU (issue 14): tensors bucketed whole take ``aminmax`` and ``sum``, their zero and
non-finite counts come from the buckets. A sampled float32/float64 tensor is read once from
memory: its norm, then ``CHUNK`` pieces last-first, each piece's numpy ``min``/``max``,
subsample gather, ``== 0`` count and torch ``sum`` while it is in cache; its non-finite count
takes no pass unless min or max is non-finite. All subsamples of a step are classified
together (a table lookup on the float32 bits) and counted by one ``bincount`` (``index_add_``
off the CPU). Every value is the one torch's own ops give (``_scan_in_torch``, the path on
other devices and for half precision): same bits, which ``test_stats_numpy_scan`` checks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

DECADE_LOW = -20  # smallest decade with its own bucket: [1e-20, 1e-19)
DECADE_HIGH = 10  # magnitudes >= 1e10 go to the overflow bucket
_DECADES = DECADE_HIGH - DECADE_LOW  # 30 decade buckets per sign
ZERO_BUCKET = _DECADES + 2  # 32: per sign 30 decades + underflow + overflow come first
N_BUCKETS = 2 * ZERO_BUCKET + 1  # 65
HIST_SAMPLE = 16384  # research: histc on a 16k subsample costs 0.15 ms vs 3.8 ms full (1M)
UPDATE_SAMPLE = 512  # weight entries kept (on the host) per parameter for update ratios

# Row layout of one parameter's block (float64).
NUMEL, MIN, MAX, SUM, SUMSQ, ZEROS, NONFINITE, WSUMSQ, HIST_K, WSAMPLE_LEN = range(10)
BUCKETS = slice(10, 10 + N_BUCKETS)
WSAMPLE = slice(10 + N_BUCKETS, 10 + N_BUCKETS + UPDATE_SAMPLE)
BLOCK = 10 + N_BUCKETS + UPDATE_SAMPLE


def _limits() -> np.ndarray:
    """Right edges of the 65 buckets, ascending."""
    neg = [-(10.0**e) for e in range(DECADE_HIGH, DECADE_LOW - 1, -1)]  # -1e10 .. -1e-20
    neg.append(0.0)  # right edge of the negative underflow bucket (-1e-20, 0)
    zero = [math.ulp(0.0)]  # zero bucket [0, 5e-324)
    pos = [10.0**e for e in range(DECADE_LOW, DECADE_HIGH + 1)]  # 1e-20 .. 1e10
    pos.append(np.finfo(np.float64).max)  # overflow bucket [1e10, +max], like TF's DBL_MAX
    return np.array(neg + zero + pos, dtype=np.float64)


BUCKET_LIMITS = _limits()


def sample_indices(numel: int, k: int, device: torch.device) -> torch.Tensor | None:
    """Deterministic, evenly spread subsample of ``k`` flat positions (None: take everything).

    ``i * a mod numel`` with ``a`` near ``numel / golden ratio`` and coprime with ``numel``
    visits distinct positions spread over the whole tensor. Computed once per size and kept,
    in ascending order (the same set at every step): a gather in memory order streams through
    the cache instead of jumping across the tensor, and bucket counts and norms do not
    depend on the order.
    """
    if numel <= k:
        return None
    key = (numel, k, device)
    cached = _positions.pop(key, None)
    if cached is None:
        a = max(1, round(numel * 0.6180339887498949))
        while math.gcd(a, numel) != 1:
            a += 1
        cached = torch.arange(k, device=device, dtype=torch.int64).mul_(a).remainder_(numel).sort().values
        if len(_positions) >= POSITIONS_CACHED:
            del _positions[next(iter(_positions))]  # least recently used
    _positions[key] = cached
    return cached


# Sorted sample positions per (numel, k, device), most recently used last: at most
# POSITIONS_CACHED x HIST_SAMPLE x 8 bytes (16 MiB) per device, held between logging steps.
POSITIONS_CACHED = 128
_positions: dict[tuple[int, int, torch.device], torch.Tensor] = {}


@functools.lru_cache(maxsize=POSITIONS_CACHED)  # k x 4 bytes each: at most 8 MiB
def _positions_by_piece(numel: int, k: int) -> tuple[np.ndarray, ...]:
    """The CPU sample positions split by ``CHUNK`` piece, relative to each piece's start (int32):
    a piece's sample is gathered while the piece is in cache for its other passes."""
    positions = sample_indices(numel, k, torch.device("cpu")).numpy()  # type: ignore[union-attr]
    starts = np.arange(0, numel, CHUNK)
    bounds = np.searchsorted(positions, np.append(starts, numel))
    return tuple((positions[b:e] - s).astype(np.int32) for s, b, e in zip(starts, bounds[:-1], bounds[1:]))


def _slot_edges(dtype: torch.dtype) -> list[float]:
    """Ascending edges for ``torch.bucketize(x, edges)`` (``right=False``: slot = #edges < x).

    Slots: 0 -inf, 1 overflow (-inf, -1e10], 2..31 negative decades, 32 negative underflow,
    33 zero (both signs), 34 positive underflow, 35..64 positive decades, 65 overflow
    [1e10, max], 66 +inf, 67 NaN (bucketize puts NaN past the last edge on CPU and CUDA).
    Each decade edge is the neighbour of the float64 limit ``10.0**e`` (``BUCKET_LIMITS``) that
    makes a comparison in ``dtype`` equal to comparing with that limit; for float32 and
    narrower values (no such value lies between ``10.0**e`` and the exact power) that is the
    decade of the exact magnitude, as documented above.
    """
    finfo = np.finfo(torch.empty(0, dtype=dtype).numpy().dtype)
    ftype = finfo.dtype.type
    ups = []  # smallest representable >= 10.0**e, e = LOW..HIGH
    for e in range(DECADE_LOW, DECADE_HIGH + 1):
        exact = Fraction(10.0**e)
        v = ftype(float(exact))
        while Fraction(float(v)) < exact:
            v = np.nextafter(v, ftype(np.inf))
        while Fraction(float(np.nextafter(v, ftype(0)))) >= exact:
            v = np.nextafter(v, ftype(0))
        ups.append(v)
    zero = ftype(0)
    negative = [-u for u in reversed(ups)]  # x > -u  <=>  |x| < 10**e for negative x
    positive = [np.nextafter(u, zero) for u in ups]  # x > prev(u)  <=>  x >= 10**e
    tiny = np.nextafter(zero, ftype(1))
    edges = [-np.inf, *negative, -tiny, zero, *positive, finfo.max, np.inf]
    return [float(e) for e in edges]


_SLOTS = 68
_ZERO_SLOT, _NEG_INF_SLOT, _POS_INF_SLOT, _NAN_SLOT = 33, 0, 66, 67
_EDGES = {dtype: _slot_edges(dtype) for dtype in (torch.float32, torch.float64)}


_KEY_SHIFT = 20  # float32 bits >> 20: sign, exponent and 3 mantissa bits, 4096 keys
_KEY_OFFSET = 1 << (31 - _KEY_SHIFT)  # signed keys -2048..2047 -> table rows 0..4095


def _float32_tables() -> np.ndarray:
    """``[3, 4096]`` int32 rows: threshold on ``|x|``'s bits, slot below it, slot from it on.

    Each key covers 1/8 of a binade (a ratio of at most 1.125), so at most one slot edge
    falls inside it; its threshold is found by bisection on the bit patterns against the
    same edges ``bucketize`` uses, so both ways give the same slot for every float32.
    """
    edges = np.array(_EDGES[torch.float32], dtype=np.float32)
    keys = np.arange(4096, dtype=np.int64) - _KEY_OFFSET
    sign = np.where(keys < 0, np.int64(1) << 31, 0)
    low = (keys << _KEY_SHIFT) & 0x7FFFFFFF  # |x| bits at the start of the key's range
    high = low | ((1 << _KEY_SHIFT) - 1)

    def slot(magnitude: np.ndarray) -> np.ndarray:
        values = (magnitude | sign).astype(np.uint32).view(np.float32)
        return np.searchsorted(edges, values, side="left")  # #edges < x; NaN sorts last

    below, above = slot(low), slot(high)
    lo, hi = low.copy(), high.copy()  # invariant: slot(lo) == below, slot(hi) == above
    for _ in range(_KEY_SHIFT + 1):
        mid = (lo + hi) // 2
        up = slot(mid) == above
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    threshold = np.where(below == above, np.iinfo(np.int32).max, hi)
    assert ((slot(threshold - 1) == below) | (below == above)).all() and (slot(np.minimum(threshold, high)) == above).all()
    return np.stack([threshold, below, above]).astype(np.int32)


_FLOAT32_TABLES = _float32_tables()
_tables_on = {torch.device("cpu"): torch.from_numpy(_FLOAT32_TABLES)}  # copied once to each other device


def _bucket_slots(values: torch.Tensor) -> torch.Tensor:
    """Slot (see ``_slot_edges``) of every value of a flat float tensor, int32.

    float32 (and half precision, exact in it): the top 12 bits index a 4096-row table and
    one integer compare settles the key's one possible edge: 3.1 ms instead of 7.6 ms on CPU
    for the 447k sampled values of a 76-tensor GPT with ``bucketize``'s branchy binary search
    over 67 edges, which float64 values still take.
    """
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()
    if values.dtype == torch.float64:
        edges = torch.tensor(_EDGES[torch.float64], dtype=torch.float64, device=values.device)
        return torch.bucketize(values, edges, out_int32=True)
    tables = _tables_on.get(values.device)
    if tables is None:
        tables = _tables_on[values.device] = torch.as_tensor(_FLOAT32_TABLES, device=values.device)
    bits = values.view(torch.int32)
    key = torch.bitwise_right_shift(bits, _KEY_SHIFT).add_(_KEY_OFFSET)
    magnitude = torch.bitwise_and(bits, 0x7FFFFFFF)
    threshold, below, above = (tables[i].index_select(0, key) for i in range(3))
    return torch.where(magnitude >= threshold, above, below)


def _public_buckets(slots: torch.Tensor) -> torch.Tensor:
    """``[P, _SLOTS]`` slot counts to the 65 written buckets (±Inf join the overflow buckets)."""
    buckets = slots[:, _NEG_INF_SLOT + 1 : _POS_INF_SLOT].clone()
    buckets[:, 0] += slots[:, _NEG_INF_SLOT]
    buckets[:, -1] += slots[:, _POS_INF_SLOT]
    return buckets


def _subsamples(tensors: list[torch.Tensor], k: int, gathered: dict[int, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Each tensor flattened, or its fixed subsample of ``k`` entries when it is larger
    (``gathered[p]`` when the scan of tensor ``p`` already took it)."""
    out = []
    for p, t in enumerate(tensors):
        sample = gathered.get(p) if gathered else None
        if sample is None:
            flat = t.detach().reshape(-1)
            idx = sample_indices(flat.numel(), k, flat.device)
            sample = flat if idx is None else flat.index_select(0, idx)
        out.append(sample)
    return out


def _slot_counts(tensors: list[torch.Tensor], gathered: dict[int, torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Per-tensor slot counts ``[P, _SLOTS]`` (float64) of the fixed subsamples, and their sizes.

    All subsamples of a step are classified together and counted at once: ``bincount`` on
    the CPU (a quarter less than ``index_add_``), ``index_add_`` elsewhere (``bincount``
    reads the largest index back to the host on CUDA).
    """
    device = tensors[0].device
    samples = _subsamples(tensors, HIST_SAMPLE, gathered)
    sizes = [s.numel() for s in samples]
    slots = _bucket_slots(torch.cat(samples))
    offsets = torch.arange(0, len(samples) * _SLOTS, _SLOTS, device=device, dtype=torch.int32)
    slots += torch.repeat_interleave(offsets, torch.tensor(sizes, device=device), output_size=slots.numel())
    if device.type == "cpu":
        return torch.bincount(slots, minlength=len(samples) * _SLOTS).double().view(len(samples), _SLOTS), sizes
    counts = torch.zeros(len(samples) * _SLOTS, dtype=torch.float64, device=device)
    counts.index_add_(0, slots, torch.ones(1, dtype=torch.float64, device=device).expand(slots.numel()))
    return counts.view(len(samples), _SLOTS), sizes


_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


CHUNK = 1 << 17  # entries per piece of a sampled tensor (512 KiB of float32): its passes stay in L2

# A min or max: a 0-d tensor, or a numpy scalar when numpy read it on the CPU.
Extreme = torch.Tensor | np.floating


def _nonfinite_count(g: torch.Tensor, low: Extreme, high: Extreme) -> torch.Tensor:
    """NaN and ±Inf entries of ``g``, given its exact min and max: no pass at all when both are finite.

    ``aminmax`` (and numpy's ``min``/``max``) propagate NaN and an infinity is its tensor's
    min or max, so both are finite exactly when every entry is (unlike a sum or sum of
    squares, they cannot overflow). Reading them costs nothing on CPU, where the entries are
    then counted only on the rare bad step; on another device the read would wait for it, so
    there they are always counted (one pass).
    """
    if g.device.type == "cpu" and math.isfinite(low.item()) and math.isfinite(high.item()):
        return torch.zeros((), dtype=torch.int64)
    return torch.count_nonzero(torch.isfinite(g).logical_not_())


def _combine(piece_values: list[Extreme], reduce: str) -> Extreme:
    """A tensor's min (``"amin"``) or max (``"amax"``) from its pieces', bit for bit what
    ``torch.stack(...).amin()`` gives: plain ``min``/``max`` when numpy found every piece's
    value (never ±0 or NaN there, so the value has one bit pattern), that torch call otherwise."""
    if len(piece_values) == 1:
        return piece_values[0]
    if all(isinstance(v, np.floating) for v in piece_values):
        return (min if reduce == "amin" else max)(piece_values)
    return getattr(torch.stack([torch.as_tensor(v) for v in piece_values]), reduce)()


def _sum_of_pieces(sums: list[torch.Tensor]) -> torch.Tensor:
    return sums[0] if len(sums) == 1 else torch.stack(sums).sum()


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one read of a sampled tensor gives (see ``_scan_in_numpy``)."""

    low: Extreme
    high: Extreme
    total: torch.Tensor
    zeros: int | torch.Tensor
    sample: torch.Tensor | None = None  # its bucket subsample, when taken during the read
    norm: torch.Tensor | None = None  # its L2 norm (``norm_rows``' value), when taken during the read


def _scan_in_numpy(t: torch.Tensor, accumulate: torch.dtype) -> _Scan:
    """L2 norm, min, max, sum, zero count and bucket subsample of a CPU float32/float64 tensor:
    the norm over the tensor as it is laid out (``norm_rows``' call: a transposed gradient's
    norm sums in its own order), then its flat view ``CHUNK`` by ``CHUNK`` from the last
    piece back, so the pieces the norm read last are still in cache.

    numpy's SIMD ``min``, ``max`` and ``== 0`` plus a count of the booleans cost about half
    of torch's ``aminmax``, ``bitwise_and`` and integer ``count_nonzero`` on the CPU. A
    nonzero, non-NaN extreme is the same value whoever finds it; when a piece's min or max
    is ±0 or NaN (which zero or which NaN comes back is the implementation's choice), torch's
    ``aminmax`` picks it, as before. A piece whose min is above 0 or max below 0 holds no
    zero: no count. Sums stay torch's (same pieces, same order: the same bits). The subsample
    is gathered piece by piece while each piece is in cache (the same entries, in the same
    order, as ``index_select`` with the sorted positions).
    """
    norm = torch.linalg.vector_norm(t, dtype=accumulate)
    g = t.detach().reshape(-1)
    values = g.numpy()
    is_zero = np.empty(min(values.size, CHUNK), dtype=np.bool_)
    sample = np.empty(HIST_SAMPLE, dtype=values.dtype)
    end = HIST_SAMPLE
    lows: list[Extreme] = []
    highs: list[Extreme] = []
    sums: list[torch.Tensor] = []
    zeros = 0
    pieces = zip(range(0, values.size, CHUNK), g.split(CHUNK), _positions_by_piece(values.size, HIST_SAMPLE))
    for start, piece, positions in reversed(list(pieces)):
        host = values[start : start + CHUNK]
        low, high = host.min(), host.max()  # a piece not in cache comes in here
        np.take(host, positions, out=sample[end - positions.size : end], mode="clip")  # positions < CHUNK
        end -= positions.size
        if not (low > 0 or high < 0):
            zeros += int(np.count_nonzero(np.equal(host, 0, out=is_zero[: host.size])))
            if not (low < 0 < high):  # an extreme is ±0 or NaN
                low, high = torch.aminmax(piece)
        lows.append(low)
        highs.append(high)
        sums.append(piece.sum(dtype=accumulate))
    for in_order in (lows, highs, sums):
        in_order.reverse()
    return _Scan(_combine(lows, "amin"), _combine(highs, "amax"), _sum_of_pieces(sums), zeros, torch.from_numpy(sample), norm)


def _scan_in_torch(g: torch.Tensor, accumulate: torch.dtype, scratch: torch.Tensor) -> _Scan:
    """The same as ``_scan_in_numpy`` with torch ops only (any device and dtype), zeros counted
    on the integer view of the bits: ``|x|``'s bits (sign masked off into ``scratch``) are 0
    exactly for ±0; an integer ``count_nonzero`` costs a fraction of the float one, and
    integers have no subnormal penalty."""
    lows, highs, sums, nonzeros = [], [], [], []
    for piece in g.split(CHUNK):
        bits = scratch[: piece.numel()]
        torch.bitwise_and(piece.view(bits.dtype), torch.iinfo(bits.dtype).max, out=bits)  # |x|
        low, high = torch.aminmax(piece)
        lows.append(low)
        highs.append(high)
        sums.append(piece.sum(dtype=accumulate))
        nonzeros.append(torch.count_nonzero(bits))
    nonzero = _sum_of_pieces(nonzeros)
    return _Scan(_combine(lows, "amin"), _combine(highs, "amax"), _sum_of_pieces(sums), g.numel() - nonzero)


def _numpy_reads(g: torch.Tensor) -> bool:
    return g.device.type == "cpu" and g.dtype in (torch.float32, torch.float64) and not g.is_neg()


def _numpy_scans(tensors: list[torch.Tensor]) -> dict[int, _Scan]:
    """``_scan_in_numpy`` of every sampled CPU float32/float64 tensor, by position."""
    scans = {}
    for p, t in enumerate(tensors):
        if t.numel() > HIST_SAMPLE and _numpy_reads(t):
            scans[p] = _scan_in_numpy(t, torch.promote_types(t.dtype, torch.float32))
    return scans


def _exact_columns(tensors: list[torch.Tensor], slots: torch.Tensor, sizes: list[int], scans: dict[int, _Scan]) -> torch.Tensor:
    """Exact min, max, sum, zero and ±Inf/NaN counts per tensor, float64 ``[P, 5]``.

    min/max propagate NaN; sums accumulate in float32 at least (float64 would cost ~15x on
    CPU; half precision would overflow). Tensors bucketed whole already have their counts in
    their slots. Sampled ones are scanned in ``CHUNK`` pieces, all passes over a piece in a
    row, so that only the first pass over each piece comes from main memory (numpy on the
    CPU for float32/float64, torch elsewhere); their NaN/Inf by ``_nonfinite_count``.
    """
    counts = torch.stack(
        [slots[:, _ZERO_SLOT], slots[:, _NEG_INF_SLOT] + slots[:, _POS_INF_SLOT] + slots[:, _NAN_SLOT]], dim=1
    )
    largest: dict[tuple[torch.dtype, torch.device], int] = {}
    for p, (t, k) in enumerate(zip(tensors, sizes)):
        if t.numel() > k and p not in scans:
            key = (_BITS[t.dtype], t.device)
            largest[key] = max(largest.get(key, 0), min(t.numel(), CHUNK))
    scratch = {key: torch.empty(n, dtype=key[0], device=key[1]) for key, n in largest.items()}
    moments, sampled, exact = [], [], []
    for p, (t, k) in enumerate(zip(tensors, sizes)):
        g = t.detach().reshape(-1)
        accumulate = torch.promote_types(g.dtype, torch.float32)
        if g.numel() <= k:
            moments.extend((*torch.aminmax(g), g.sum(dtype=accumulate)))
            continue
        scan = scans.get(p) or _scan_in_torch(g, accumulate, scratch[(_BITS[g.dtype], g.device)])
        nonfinite = _nonfinite_count(g, scan.low, scan.high)
        moments.extend((torch.as_tensor(scan.low), torch.as_tensor(scan.high), scan.total))
        sampled.append(p)
        exact.extend((torch.as_tensor(scan.zeros), nonfinite))
    if sampled:
        index = torch.tensor(sampled, device=counts.device)
        counts.index_copy_(0, index, torch.stack(exact).double().view(-1, 2))
    return torch.cat([torch.stack(moments).double().view(-1, 3), counts], dim=1)


def norm_rows(grads: list[torch.Tensor], taken: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-parameter squared L2 norm of the gradients, float64 ``[P]`` (one fused pass).

    Accumulated in float32, or float64 for float64 tensors (``_foreach_norm`` refuses to
    narrow them, so a model with any float64 parameter takes one call per tensor).
    ``taken[p]``: tensor ``p``'s norm, already computed by ``_scan_in_numpy`` (CPU only,
    where ``_foreach_norm`` is that same ``vector_norm`` call per tensor: the same bits).
    """
    if not taken and all(g.dtype != torch.float64 for g in grads):
        norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
    else:
        taken = taken or {}
        norms = [
            taken[p] if p in taken else torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))
            for p, g in enumerate(grads)
        ]
    return torch.stack(norms).double().square_()


def full_rows(grads: list[torch.Tensor], weights: list[torch.Tensor] | None) -> torch.Tensor:
    """All statistics of every parameter as one float64 ``[P, BLOCK]`` tensor, on the device."""
    device = grads[0].device
    count = len(grads)
    scans = _numpy_scans(grads)  # first: they take the norms and the subsamples of what they read
    sumsq = norm_rows(grads, {p: s.norm for p, s in scans.items()})  # type: ignore[misc]
    slots, sizes = _slot_counts(grads, {p: s.sample for p, s in scans.items()})
    exact = _exact_columns(grads, slots, sizes, scans)
    numel_t = torch.tensor([g.numel() for g in grads], dtype=torch.float64, device=device)

    if weights is None:
        wsumsq = torch.zeros(count, dtype=torch.float64, device=device)
        wsample = torch.zeros(count, UPDATE_SAMPLE, dtype=torch.float64, device=device)
        wlen = [0] * count
    else:
        wsumsq = norm_rows(weights)
        wsamples = [s.double() for s in _subsamples(weights, UPDATE_SAMPLE)]
        wlen = [s.numel() for s in wsamples]
        wsamples.append(torch.empty(UPDATE_SAMPLE, dtype=torch.float64, device=device))  # pads to the width
        wsample = torch.nn.utils.rnn.pad_sequence(wsamples, batch_first=True)[:count]
    head = torch.stack(
        [
            numel_t,
            exact[:, 0],
            exact[:, 1],
            exact[:, 2],
            sumsq,
            exact[:, 3],
            exact[:, 4],
            wsumsq,
            torch.tensor(sizes, dtype=torch.float64, device=device),
            torch.tensor(wlen, dtype=torch.float64, device=device),
        ],
        dim=1,
    )
    return torch.cat([head, _public_buckets(slots), wsample], dim=1)


@dataclass(frozen=True, slots=True)
class ParamStats:
    """Host-side statistics of one parameter (merged over ranks when reduced)."""

    numel: float
    min: float
    max: float
    sum: float
    sum_squares: float
    zeros: float
    nonfinite: float
    weight_sum_squares: float
    bucket_counts: np.ndarray  # float64 [N_BUCKETS], scaled to numel
    weight_sample: np.ndarray  # float64, the fixed weight subsample (empty without weights)


def decode(rows: np.ndarray) -> list[ParamStats]:
    """Turn gathered rows ``[ranks, P, BLOCK]`` into per-parameter stats merged over ranks.

    Buckets are scaled per rank (each rank sampled its own shard) and then summed; NaN in
    min/max propagates like numpy's reductions, so a NaN on any rank shows.
    """
    scale = rows[:, :, NUMEL] / np.maximum(rows[:, :, HIST_K], 1.0)
    buckets = (rows[:, :, BUCKETS] * scale[:, :, None]).sum(axis=0)
    totals = rows[:, :, [NUMEL, SUM, SUMSQ, ZEROS, NONFINITE, WSUMSQ]].sum(axis=0).tolist()
    lows, highs = np.min(rows[:, :, MIN], axis=0).tolist(), np.max(rows[:, :, MAX], axis=0).tolist()
    lengths = rows[:, :, WSAMPLE_LEN].astype(np.int64)
    out = []
    for p, (numel, total, sumsq, zeros, nonfinite, wsumsq) in enumerate(totals):
        wsample = np.concatenate([rows[i, p, WSAMPLE][: lengths[i, p]] for i in range(rows.shape[0])])
        out.append(
            ParamStats(numel, lows[p], highs[p], total, sumsq, zeros, nonfinite, wsumsq, buckets[p], wsample)
        )
    return out


@dataclass(frozen=True, slots=True)
class HostCopy:
    """A device tensor's host copy that may still be in flight (CUDA non-blocking)."""

    tensor: torch.Tensor
    ready: object | None  # torch.cuda.Event, or None when the copy is already complete

    def numpy_if_ready(self) -> np.ndarray | None:
        """The values if the copy has already landed (always on CPU), without waiting."""
        if self.ready is None or self.ready.query():  # type: ignore[attr-defined]
            return self.tensor.numpy()
        return None

    def numpy(self) -> np.ndarray:
        """Wait for the copy (writer thread only) and view it as numpy."""
        if self.ready is not None:
            self.ready.synchronize()  # type: ignore[attr-defined]
        return self.tensor.numpy()


def to_host(t: torch.Tensor) -> HostCopy:
    """THE device-to-host copy of a logging step: non-blocking into pinned memory on CUDA."""
    on_cuda = t.device.type == "cuda"
    host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=on_cuda)
    host.copy_(t, non_blocking=on_cuda)
    ready = None
    if on_cuda:
        ready = torch.cuda.Event()
        ready.record()
    return HostCopy(host, ready)
