"""Progress reports of the training loops (MLP.fit, LogisticRegression.fit)."""
import sys

__all__ = ["Progress"]


class Progress:
    """tqdm over epochs when it is installed, else one plain line per epoch."""

    def __init__(self, total, enabled, file):
        self.bar = None
        self.enabled = enabled
        self.file = file if file is not None else sys.stdout
        if enabled and enabled != "plain":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="epoch", file=file, leave=True)

    def update(self, epoch, total, stats):
        if not self.enabled:
            return
        text = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in stats.items()}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)
        else:
            parts = " ".join(f"{k} {v}" for k, v in text.items())
            print(f"epoch {epoch}/{total}: {parts}", file=self.file, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
