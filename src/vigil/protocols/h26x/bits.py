"""MSB-first bit reader with Exp-Golomb codes (H.264 §9.1, H.265 §9.2) over an RBSP."""

from __future__ import annotations

from vigil.protocols.h26x.errors import H26xError

#: ue(v) values in parameter sets never need more than 32 bits; longer prefixes mean garbage.
MAX_EXP_GOLOMB_LEADING_ZEROS = 32


class BitReader:
    """Reads bits from bytes; raises :class:`H26xError` instead of reading past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0  # in bits
        self._end = len(data) * 8

    @property
    def position(self) -> int:
        """Bits consumed so far."""
        return self._pos

    def bits_left(self) -> int:
        return self._end - self._pos

    def u(self, count: int) -> int:
        """Read ``count`` bits as an unsigned integer."""
        if count < 0 or self._pos + count > self._end:
            raise H26xError(f"reading {count} bits at bit {self._pos} runs past the end ({self._end} bits)")
        value = 0
        for _ in range(count):
            byte = self._data[self._pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, count: int) -> None:
        if count < 0 or self._pos + count > self._end:
            raise H26xError(f"skipping {count} bits at bit {self._pos} runs past the end ({self._end} bits)")
        self._pos += count

    def ue(self) -> int:
        """Unsigned Exp-Golomb ue(v)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_LEADING_ZEROS:
                raise H26xError(f"Exp-Golomb code at bit {self._pos} has more than 32 leading zeros")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Signed Exp-Golomb se(v)."""
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)
