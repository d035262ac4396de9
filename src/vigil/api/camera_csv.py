"""Camera CSV files as spreadsheets in China produce them: pure functions, no database.

Export writes UTF-8 with a BOM (so Excel detects the encoding) and CRLF lines. Import accepts UTF-8
(with or without BOM) and GBK/GB18030 — what Excel saves as "CSV" on a Chinese Windows. Text cells that
Excel would run as a formula (``=``, ``+``, ``-``, ``@``) are exported with a leading ``'``, which import
removes again, so a round trip is exact and a hostile camera name cannot execute on an operator's desktop.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vigil.domain.errors import Invalid

COLUMNS = (
    "gb_id",
    "name",
    "rtsp_url",
    "username",
    "password",
    "region_code",
    "department",
    "category",
    "latitude",
    "longitude",
    "address",
    "ptz_type",
    "definition",
    "enabled",
    "retention_days",
    "recording_mode",
    "recording_plan",
)
REQUIRED_COLUMNS = ("gb_id", "name", "rtsp_url", "region_code")
#: Free-text columns guarded against formula injection.
_TEXT_COLUMNS = frozenset({"name", "username", "address", "department"})
_FORMULA_START = ("=", "+", "-", "@")
MAX_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: ``line`` is the spreadsheet row number (the header is row 1)."""

    line: int
    cells: dict[str, str]


class CsvFileError(Invalid):
    """The file as a whole cannot be read (encoding, header); ``row``/``field`` say where."""

    def __init__(self, row: int, field: str, message: str) -> None:
        super().__init__(f"row {row}, {field}: {message}")
        self.row = row
        self.field = field
        self.message = message


def decode_csv_bytes(data: bytes) -> str:
    """UTF-8 (BOM optional) or else GB18030 (a superset of GBK); Invalid if neither fits."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise CsvFileError(0, "file", f"neither UTF-8 nor GBK text (bad byte at offset {exc.start})") from None


def _escape(column: str, value: str) -> str:
    if column in _TEXT_COLUMNS and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _unescape(column: str, value: str) -> str:
    if column in _TEXT_COLUMNS and value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def write_csv(rows: Iterable[Mapping[str, str]]) -> str:
    """The CSV text (BOM first) of ``rows``, each a mapping over :data:`COLUMNS`."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_escape(col, row.get(col, "")) for col in COLUMNS])
    return out.getvalue()


def read_csv(text: str) -> list[CsvRow]:
    """Parse CSV text into rows keyed by column; Invalid (naming row 1) for a bad header."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFileError(1, "header", "file is empty; expected a header row " + ",".join(COLUMNS)) from None
    except csv.Error as exc:
        raise CsvFileError(1, "header", str(exc)) from None
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise CsvFileError(1, "header", f"unknown columns {', '.join(unknown)}; expected {','.join(COLUMNS)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise CsvFileError(1, "header", f"missing required columns {', '.join(missing)}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise CsvFileError(1, "header", f"duplicated columns {', '.join(duplicated)}")
    rows: list[CsvRow] = []
    try:
        # Rows are counted as records (not physical lines) so a cell with a newline keeps Excel's numbering.
        for line, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue  # blank lines Excel leaves at the end
            if len(rows) >= MAX_ROWS:
                raise CsvFileError(line, "file", f"more than {MAX_ROWS} rows; split the file")
            if len(values) != len(names):
                cells = {"__shape__": f"has {len(values)} cells, the header has {len(names)}"}
            else:
                cells = {n: _unescape(n, v.strip()) for n, v in zip(names, values, strict=True)}
            rows.append(CsvRow(line, cells))
    except csv.Error as exc:
        raise CsvFileError(reader.line_num, "file", str(exc)) from None
    return rows
