"""Progress bars of the CLI: tqdm on stderr, drawn only when stderr is a terminal.

Runtime code never draws anything: its long loops take a :data:`dqad.ports.ProgressCallback`
(``train_candidates``, the fetcher's ``split_chunks``, ``dqad_dev.backtest.run_backtest``), and
:func:`progress_bar` turns one into a bar here. Captured or piped output (tests, ``dqad ... | tee``,
CI) gets no bar and no byte of it, so what the commands print stays exactly what the README shows.
The bar is transient (cleared when done) and appears only once the work has lasted
:data:`DELAY_S`, so quick runs look as they did.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from dqad.ports import ProgressCallback

#: seconds of work before a bar shows (shorter work never draws one), and between two redraws
DELAY_S = 0.5
MIN_INTERVAL_S = 0.1


def _quiet(done: int, total: int | None) -> None:
    return None


@contextmanager
def progress_bar(
    desc: str, unit: str = "it", *, stream: TextIO | None = None, position: int = 0
) -> Iterator[ProgressCallback]:
    """A callback that draws a tqdm bar on ``stream`` (default stderr) while the block runs.

    Silent (a no-op callback, tqdm never imported) when the stream is not a terminal. A count below
    the previous one starts the bar over (the next chunk's training, the next dataset's fetch).
    ``position`` stacks bars: 1 for one nested inside another.
    """
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield _quiet
        return
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit, file=out, leave=False, delay=DELAY_S, mininterval=MIN_INTERVAL_S, miniters=1,
              position=position, dynamic_ncols=True) as bar:

        def tell(done: int, total: int | None) -> None:
            if done < bar.n:
                bar.reset()
            if total != bar.total:
                bar.total = total
            bar.update(done - bar.n)
            # a start (0) moves no count, and the last steps may come closer together than
            # MIN_INTERVAL_S: draw both, as the bar may stay a while at either (a training job
            # starting up, or fitting its final model after the last fold)
            ends = total is not None and done >= total and bar.last_print_n != bar.n
            if (done == 0 or ends) and time.time() - bar.start_t >= bar.delay:
                bar.refresh()

        yield tell
