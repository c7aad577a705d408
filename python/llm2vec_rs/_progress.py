"""Progress reporting for `LLM2Vec.encode`: a tqdm bar when tqdm is installed, else a one-line bar on stderr."""

import sys


class TqdmBar:
    """Counts encoded inputs on a tqdm bar."""

    def __init__(self, total, tqdm):
        self._bar = tqdm(total=total, desc="Encoding", unit="text")

    def __call__(self, done, total):
        self._bar.update(done - self._bar.n)

    def close(self):
        self._bar.close()


class StderrBar:
    """Rewrites one stderr line: `Encoding: done/total (percent)`."""

    def __call__(self, done, total):
        sys.stderr.write(f"\rEncoding: {done}/{total} ({100 * done // max(total, 1)}%)")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
        sys.stderr.flush()


def progress_bar(total):
    """A callable `bar(done, total)` with `close()`, drawing with tqdm when importable."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return StderrBar()
    return TqdmBar(total, tqdm)
