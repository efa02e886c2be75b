"""Progress on stderr: a redrawn bar on a terminal, plain lines (no carriage returns) otherwise."""
import sys

__all__ = ["Progress"]


class Progress:
    """`update(text)` after each step.  On a TTY one line is redrawn with '\\r' and erased at
    the end; elsewhere (logs, pipes) a full line is written whenever `section` changes.

    Parameters
    ----------
    total : int
        The number of steps.
    enabled : bool, default True
        False: write nothing.
    stream : file-like, optional
        Where to write (default ``sys.stderr``).

    Examples
    --------
    >>> import io
    >>> from fastlog.bench.progress import Progress
    >>> out = io.StringIO()                     # not a terminal: a line per new section
    >>> bar = Progress(3, stream=out)
    >>> bar.update("a", section="softmax"); bar.update("b", section="softmax"); bar.update("c", section="nll")
    >>> bar.close()
    >>> print(out.getvalue(), end="")
    [1/3] softmax
    [3/3] nll
    """

    def __init__(self, total, enabled=True, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.n, self.section = total, 0, None
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(enabled and isatty and isatty())

    def update(self, text, section=None):
        """Count one step done; `text` names it (terminal), `section` groups steps (logs).

        Parameters
        ----------
        text : str
            What was just done (the first 40 characters are shown on a terminal).
        section : str, optional
            A line is written to a non-terminal stream whenever this changes.

        Examples
        --------
        >>> import io
        >>> from fastlog.bench.progress import Progress
        >>> out = io.StringIO()
        >>> Progress(2, stream=out).update("x", section="logsumexp")
        >>> out.getvalue().splitlines()
        ['[1/2] logsumexp']
        """
        self.n += 1
        if not self.enabled:
            return
        if self.tty:
            done = int(30 * self.n / max(1, self.total))
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {self.n}/{self.total} {text[:40]:<40}")
        elif section is not None and section != self.section:
            self.section = section
            self.stream.write(f"[{self.n}/{self.total}] {section}\n")
        self.stream.flush()

    def close(self):
        """Erase the bar on a terminal (nothing elsewhere).

        Examples
        --------
        >>> import io
        >>> from fastlog.bench.progress import Progress
        >>> out = io.StringIO()
        >>> Progress(1, stream=out).close()
        >>> out.getvalue()
        ''
        """
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()
