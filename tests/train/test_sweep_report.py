"""sweep_report.html of a real 2-job Hydra multirun: the metrics table and every job's test renders."""

from html.parser import HTMLParser


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self.headings, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th", "h2"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
        elif tag == "h2":
            self.headings.append(self._cell)
        if tag in ("td", "th", "h2"):
            self._cell = None


def test_report_has_the_table_and_each_jobs_renders_per_view(run_train, tmp_path):
    sweep = tmp_path / "sweep"
    run_train("-m", "lambda_depth=0,0.1", "steps=2", "init.from_priors=false", "log.tensorboard=false",
              f"hydra.sweep.dir={sweep}")
    page = _Page()
    page.feed((sweep / "sweep_report.html").read_text())
    md = (sweep / "sweep_metrics.md").read_text().splitlines()
    assert page.rows[0] == [c.strip() for c in md[0].strip("|").split("|")]  # same columns as the markdown table
    assert [r[:2] for r in page.rows[1:]] == [["0", "lambda_depth=0"], ["1", "lambda_depth=0.1"]]
    assert page.headings == ["view_00", "view_08", "view_16"]
    assert page.images == [f"{job}/renders/{v}.png" for v in page.headings for job in ("0", "1")]
    assert all((sweep / src).is_file() for src in page.images)  # relative links resolve
