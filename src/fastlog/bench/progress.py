"""Progress on stderr: a redrawn bar on a terminal, plain lines (no carriage returns) otherwise."""
import sys

__all__ = ["Progress"]


class Progress:
    """`update(text)` after each step.  On a TTY one line is redrawn with '\\r' and erased at
    the end; elsewhere (logs, pipes) a full line is written whenever `section` changes."""

    def __init__(self, total, enabled=True, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.n, self.section = total, 0, None
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(enabled and isatty and isatty())

    def update(self, text, section=None):
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
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()
