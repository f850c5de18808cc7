"""Execute one notebook with nbclient and stop at the first failing cell.

Run by scripts/reports.ts with Debian's /usr/bin/python3, which has nbclient. The executed
notebook is written even when a cell fails, so the HTML report can show the failure.

tslab (1.0.22) prints a failing cell's exception or compile error on stderr and replies
with status "error" but sends no `error` output. This script therefore appends an nbformat
`error` output to the failing cell, built from that stderr text, so that every notebook
viewer marks the cell as failed.

The outcome goes to --status-file as JSON and into the notebook metadata under
"modarch_execution": status ("ok", "error", "timeout", "dead_kernel"), the failing cell's
index, a message, the profile and timings. Progress lines go to stderr.
"""

import argparse
import json
import math
import os
import re
import sys
import time
from datetime import datetime, timezone

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError


class CellFailed(Exception):
    """A cell's execute_reply had a status other than "ok"."""

    def __init__(self, cell_index, reply_content):
        super().__init__(f"cell {cell_index} replied with status {reply_content.get('status')!r}")
        self.cell_index = cell_index
        self.reply_content = reply_content


# A line such as "TypeError: x is not a function" in a Node stack trace.
EXCEPTION_LINE = re.compile(r"^([A-Za-z_$][\w$]*(?:Error|Exception)|Error)(?: \[[\w-]+\])?: (.*)$")
# A tslab compile error such as "3:7 - Type 'string' is not assignable to type 'number'."
COMPILE_ERROR_LINE = re.compile(r"^\d+:\d+ - (.*)$")


def stderr_text(cell):
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    )


def describe_failure(cell, reply_content):
    """Return (ename, evalue) for a failed cell, from the reply if it has them, else from stderr."""
    if reply_content.get("ename"):
        return reply_content["ename"], reply_content.get("evalue", "")

    lines = [line.strip() for line in stderr_text(cell).splitlines()]
    for line in lines:
        match = EXCEPTION_LINE.match(line)
        if match:
            return match.group(1), match.group(2)
    compile_errors = [match.group(1) for match in map(COMPILE_ERROR_LINE.match, lines) if match]
    if compile_errors:
        return "CompileError", " / ".join(compile_errors)

    last_line = next((line for line in reversed(lines) if line), "")
    return "Error", last_line or f"the kernel replied with status {reply_content.get('status')!r} and no message"


def append_error_output(cell, ename, evalue):
    cell.setdefault("outputs", []).append(
        nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])
    )


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="notebook to execute")
    parser.add_argument("--output", required=True, help="where to write the executed notebook")
    parser.add_argument("--status-file", required=True, help="where to write the outcome as JSON")
    parser.add_argument("--kernel", default="tslab", help="Jupyter kernel name (default: tslab)")
    parser.add_argument("--cell-timeout", type=float, default=10800, help="seconds per cell, 0 for no limit")
    parser.add_argument("--startup-timeout", type=float, default=120, help="seconds for the kernel to start")
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    notebook = nbformat.read(arguments.input, as_version=4)
    cell_count = len(notebook.cells)
    progress = {"cell_index": None, "cell_started": 0.0}

    # Progress lines number cells from 1 over all cells, as a reader counts them in the notebook.
    def on_cell_execute(cell, cell_index):
        progress["cell_index"] = cell_index
        progress["cell_started"] = time.monotonic()
        print(f"cell {cell_index + 1} of {cell_count} started", file=sys.stderr)

    def on_cell_executed(cell, cell_index, execute_reply):
        seconds = time.monotonic() - progress["cell_started"]
        content = (execute_reply or {}).get("content", {})
        print(f"cell {cell_index + 1} of {cell_count} finished in {seconds:.1f} s, status {content.get('status')}", file=sys.stderr)
        if content.get("status") != "ok":
            raise CellFailed(cell_index, content)

    client = NotebookClient(
        notebook,
        kernel_name=arguments.kernel,
        # nbclient 0.7 accepts only whole seconds.
        timeout=math.ceil(arguments.cell_timeout) if arguments.cell_timeout > 0 else None,
        startup_timeout=math.ceil(arguments.startup_timeout),
        # Failures are detected in on_cell_executed, which also catches "aborted" replies.
        allow_errors=True,
        record_timing=True,
        on_cell_execute=on_cell_execute,
        on_cell_executed=on_cell_executed,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(arguments.input))}},
    )

    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    status = {"status": "ok", "cell_index": None, "message": ""}

    try:
        client.execute()
    except CellFailed as failure:
        cell = notebook.cells[failure.cell_index]
        ename, evalue = describe_failure(cell, failure.reply_content)
        append_error_output(cell, ename, evalue)
        status = {"status": "error", "cell_index": failure.cell_index, "message": f"{ename}: {evalue}"}
    except CellTimeoutError:
        cell_index = progress["cell_index"]
        message = f"the cell did not finish within {arguments.cell_timeout:g} s (--cell-timeout)"
        append_error_output(notebook.cells[cell_index], "CellTimeoutError", message)
        status = {"status": "timeout", "cell_index": cell_index, "message": f"CellTimeoutError: {message}"}
    except DeadKernelError:
        cell_index = progress["cell_index"]
        message = "the kernel process died (killed, out of memory or crashed)"
        if cell_index is not None:
            append_error_output(notebook.cells[cell_index], "DeadKernelError", message)
        status = {"status": "dead_kernel", "cell_index": cell_index, "message": f"DeadKernelError: {message}"}

    status.update(
        {
            "profile": os.environ.get("MODARCH_PROFILE"),
            "kernel": arguments.kernel,
            "started_at": started_at.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - clock, 1),
        }
    )
    notebook.metadata["modarch_execution"] = status
    nbformat.write(notebook, arguments.output)
    with open(arguments.status_file, "w", encoding="utf-8") as status_file:
        json.dump(status, status_file)
    return 0 if status["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
