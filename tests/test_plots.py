"""The report plots show every value and every title: a negative bench value (Ray faster than the pool gives a
negative extra time) on its panel's axis, and a long `segany eval` title (several methods in one run) inside the
figure instead of cut off at its edges. Checked on real matplotlib figures, drawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from segany.bench.report import Row, _x_axis, write_report
from segany.eval.report import fitted_title


def _figure(**kwargs: float | tuple[float, float]) -> Figure:
    """A figure drawn by Agg, as the reports' PNGs are, without pyplot's global state."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ([0.01, 3.0, 40.0], "log"),  # positive and wide: log
        ([-0.05, 3.0, 40.0], "symlog"),  # wide with a negative: a log axis would drop it
        ([-0.5, 2.0], "linear"),
        ([1.0, 2.0], "linear"),
    ],
)
def test_every_value_lies_on_its_panels_axis(values: list[float], scale: str) -> None:
    fig = _figure()
    ax = fig.subplots()
    ax.barh(range(len(values)), values)
    _x_axis(ax, values)
    fig.canvas.draw()
    low, high = ax.get_xlim()
    assert ax.get_xscale() == scale
    assert all(low < v < high for v in values), (low, high)
    if scale == "linear" and min(values) > 0:
        assert low == 0.0  # bars of positive values start at the axis


def test_a_bench_with_a_negative_value_writes_its_plot(tmp_path: Path) -> None:
    rows = [Row("24 assets", "extra wall time per asset", -0.04, "s"), Row("24 assets", "start", 3.5, "s")]
    write_report("neg", tmp_path, rows, argv=["segany", "bench", "neg"])
    assert (tmp_path / "neg.png").stat().st_size > 0


def test_a_long_title_is_wrapped_inside_the_figure() -> None:
    methods = " vs ".join(["iseg", "sa3d", "walk", "saga@geometric", "saga@oracle", "sas@oracle_text", "baseline"])
    fig = _figure(figsize=(6.4, 4.2), dpi=120)  # the clicks plot's size
    ax = fig.subplots()
    ax.set_ylabel("mean IoU (%)")
    fitted_title(ax, f"{methods}: 12 shapes, mean over targets")
    fig.tight_layout()
    fig.canvas.draw()
    box, page = ax.title.get_window_extent(), fig.bbox
    assert "\n" in ax.get_title()
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)
