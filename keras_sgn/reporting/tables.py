"""The one Markdown table of the project."""

from keras_sgn.errors import ArgumentError


def _cell(value, float_format):
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return format(value, float_format)
    return str(value)


def markdown_table(header, rows, float_format=".4f"):
    """A GitHub-flavoured Markdown table.

    Args:
        header: the column titles.
        rows: sequences of cells, one per column; floats are written with
            `float_format`, `None` as an empty cell, anything else with `str`.

    Example:

    ```python
    markdown_table(["method", "robust"], [["sgn", 0.91234]])
    # '| method | robust |\\n|---|---|\\n| sgn | 0.9123 |'
    ```
    """
    header = [str(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ArgumentError(f"Each row needs {len(header)} cells (one per column of "
                                f"{header}). Received: {row!r}.")
        lines.append("| " + " | ".join(_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)
