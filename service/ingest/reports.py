"""Error reports beside refused release files: `<name>.error.txt`, removed once the file is fixed.

Operators drop files in a folder and may never look at a log or a status page: the reason a file
was refused sits next to it, in the folder they already look at. The `*.error.txt` names are
ignored by the scanner and the watcher, so a report is never taken for a release or an attachment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from service.files import write_atomic
from service.models import FileProblem

log = logging.getLogger(__name__)
SUFFIX = ".error.txt"


def report_path(folder: Path, source: str) -> Path:
    """Where the report on the release file `source` (relative to `folder`) is written."""
    return folder / (source + SUFFIX)


def report_text(problem: FileProblem) -> str:
    """The report on one refused file, for a person reading it in a file manager or an editor."""
    lines = [
        f"This file was not published: {problem.source}",
        "",
        f"Line:       {problem.line}" if problem.line is not None else "Line:       (the whole file)",
        f"Reason:     {problem.reason}",
    ]
    if problem.hint:
        lines.append(f"How to fix: {problem.hint}")
    lines += ["", "Fix the file and save it again: this report disappears once the file is published."]
    return "\n".join(lines) + "\n"


def sync_reports(folder: Path, problems: Iterable[FileProblem], cleared: Iterable[str]) -> None:
    """Write a report for each problem (unless it already says the same); remove those of `cleared`."""
    for problem in problems:
        path, text = report_path(folder, problem.source), report_text(problem).encode()
        try:
            if not path.is_file() or path.read_bytes() != text:
                write_atomic(path, text)
        except OSError as exc:  # a read-only folder: the log, status and /healthz still say it
            log.debug("could not write an error report", extra={"file": str(path), "error": str(exc)})
    for source in cleared:
        try:
            report_path(folder, source).unlink(missing_ok=True)
        except OSError as exc:
            log.debug("could not remove an error report", extra={"file": source, "error": str(exc)})
