"""PDF releases (.pdf): the text of the PDF, extracted in a child process, for the plain-text parser.

pdfminer.six runs in `service.ingest.pdf_worker`, a child process with a memory cap, killed at the
`extract_seconds` wall-clock limit: a PDF that loops or explodes costs that process, not the service.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.errors import AnnouncementError

if TYPE_CHECKING:
    from service.ingest.options import IngestOptions

MEMORY_LIMIT = 1 << 30  # bytes of address space for the child; decoded images and fonts stay far below
ENCRYPTED_HINT = "export the PDF again without protection (no password, no permissions)"
DAMAGED_HINT = "export the PDF again, or check that the copy is complete"
UNMAPPED_HINT = "export the PDF again as PDF/A, which maps every glyph to a letter, or provide a .txt release"
NO_TEXT_HINT = (
    "export the PDF from the original document so that it keeps its text, or provide the text as a "
    ".txt release; scanned pages are not read (no text recognition)"
)
_WORKER = "service.ingest.pdf_worker"
_EXIT_REFUSED = 2  # pdf_worker.EXIT_REFUSED, not imported: that module loads pdfminer
# The directory holding the `service` package: the child imports this very copy, installed or not.
_ROOT = Path(__file__).resolve().parents[2]
_DAY = 86_400.0
_TAIL = 1024  # readers look for the header and %%EOF this far from either end (PDF 1.7, annex H)


def pdf_to_text(raw: bytes, source: str, options: IngestOptions) -> str:
    """The text of a PDF release, paragraphs and headings separated by blank lines, or AnnouncementError."""
    if b"%PDF-" not in raw[:_TAIL]:
        raise AnnouncementError(source, "not a readable PDF (no %PDF- header)", hint=DAMAGED_HINT)
    if b"%%EOF" not in raw[-_TAIL:]:
        # pdfminer would rebuild what it can of a cut file; a release must not lose its end silently.
        raise AnnouncementError(
            source, "not a readable PDF (truncated: no %%EOF at the end)", hint=DAMAGED_HINT
        )
    status, out, err = _run(raw, source, options)
    if status == 0:
        text = out.decode("utf-8", "replace")
        if not text.strip():
            raise AnnouncementError(source, "the PDF has no text layer (a scan?)", hint=NO_TEXT_HINT)
        return text
    if status == _EXIT_REFUSED:
        raise _refusal(out.decode("utf-8", "replace").strip(), source, options)
    raise AnnouncementError(source, f"not a readable PDF ({_crash(status, err)})", hint=DAMAGED_HINT)


def _run(raw: bytes, source: str, options: IngestOptions) -> tuple[int, bytes, bytes]:
    seconds = min(options.extract_seconds, _DAY)  # the settings accept inf, which select() does not
    # The CPU limit is a backstop for a child whose parent died; the wall clock is the real limit.
    cpu = math.ceil(seconds) + 1
    command = [sys.executable, "-m", _WORKER, str(options.max_pages), str(MEMORY_LIMIT), str(cpu)]
    try:
        # On timeout, run() kills the child and waits for it: nothing is left behind.
        done = subprocess.run(
            command, input=raw, capture_output=True, timeout=seconds, cwd=_ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        raise AnnouncementError(
            source,
            f"reading the PDF took longer than {options.extract_seconds:g} s",
            hint="raise extract_seconds in config.yaml if this is intended",
        ) from None
    except OSError as exc:
        raise AnnouncementError(source, f"cannot start the PDF reader ({exc})") from None
    return done.returncode, done.stdout, done.stderr


def _refusal(code: str, source: str, options: IngestOptions) -> AnnouncementError:
    kind, _, detail = code.partition(" ")
    if kind == "encrypted":
        return AnnouncementError(source, "the PDF is encrypted", hint=ENCRYPTED_HINT)
    if kind == "pages":
        return AnnouncementError(
            source,
            f"the PDF has {detail} pages; the limit is {options.max_pages}",
            hint="raise max_pages in config.yaml if this is intended",
        )
    if kind == "unmapped":
        return AnnouncementError(
            source,
            "the PDF's fonts do not say which letters they draw (no Unicode mapping)",
            hint=UNMAPPED_HINT,
        )
    if kind == "memory":
        return AnnouncementError(
            source,
            f"reading the PDF needs more than {MEMORY_LIMIT >> 20} MiB of memory",
            hint="export the PDF again with smaller images",
        )
    return AnnouncementError(source, f"not a readable PDF ({detail or code})", hint=DAMAGED_HINT)


def _crash(status: int, err: bytes) -> str:
    if status < 0:
        try:
            return f"the PDF reader was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"the PDF reader was killed by signal {-status}"
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return f"the PDF reader failed with status {status}" + (f": {lines[-1][:200]}" if lines else "")
