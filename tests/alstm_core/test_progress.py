"""Progress reporting (alstm_core.progress): tqdm's bar on a terminal, occasional plain lines elsewhere,
nothing when disabled; and an extraction run whose stderr is a file gets lines, not carriage returns."""

import io

from tqdm import tqdm

from alstm_core.progress import LineProgress, progress_bar, progress_message


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_at_most_every_interval_and_a_last_one():
    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(total=10, desc="extract", unit="video", file=out, interval=5, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 2.0
        bar.update(1)
    bar.set_postfix_str("31 frames/s")
    bar.close()
    bar.close()                                               # closing twice writes nothing more
    assert out.getvalue().splitlines() == [
        "extract: 3/10 video (30%), 6 s", "extract: 6/10 video (60%), 12 s",
        "extract: 9/10 video (90%), 18 s", "extract: 10/10 video (100%), 20 s, 31 frames/s"]
    assert "\r" not in out.getvalue()


def test_the_stream_decides_the_kind():
    assert isinstance(progress_bar(total=3, file=io.StringIO()), LineProgress)
    terminal = progress_bar(total=3, file=Terminal())
    assert isinstance(terminal, tqdm)
    terminal.close()
    quiet = io.StringIO()
    with progress_bar(total=3, file=quiet, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_wrapping_an_iterable_yields_everything_and_ends_with_a_line():
    out = io.StringIO()
    assert list(progress_bar(range(4), desc="merge", unit="video", file=out)) == [0, 1, 2, 3]
    assert out.getvalue() == "merge: 4/4 video (100%), 0 s\n"
    left = io.StringIO()
    with progress_bar(total=2_000_000, desc="rows", file=left, leave=False) as bar:
        bar.update(1_500_000)
    assert left.getvalue() == ""                              # leave=False: no closing line
    big = io.StringIO()
    LineProgress(total=2_000_000, desc="rows", file=big, interval=0).update(1_500_000)
    assert big.getvalue().startswith("rows: 1500000/2000000 it (75%)")
    message = io.StringIO()
    progress_message("warning: x", file=message)
    assert message.getvalue() == "warning: x\n"
