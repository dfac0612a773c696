"""``churnml ui`` over the ``churnml_scores`` table (a DuckDB file here; PostgreSQL in
``tests/integration/test_ui_sql.py``) and over weeks that cannot be read.

- the same three weeks, scored by the real weekly job, served from the folder and from a DuckDB
  table written by ``churnml score``'s own publisher: every page renders the same (the footer,
  which names the source, aside), the list frames are equal, and one account's full row (reasons,
  alerts, action) equals the parquet row;
- a corrupt week file: left out, named with the reason in a banner on every page, read again
  once the file is fixed; nothing readable: a clear 404 page; never a 5xx;
- a database without the table, a table of an older schema version, a table without the
  columns the pages need, a database that cannot be reached (the password never shown);
- a week rewritten in the table is read again.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnml.jobs.partitions import list_partitions, mark_complete, partition_dir
from support.ui_site import WEEKS, scored_site  # tests/ is on sys.path (conftest.py)


def NO_REGISTRY():
    from churnml.ui.evaluation import Evaluations

    return Evaluations(message="No model registry in this test.")


def client_for(scores, data=None):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    return TestClient(create_app(scores, data, api_key="", registry=NO_REGISTRY))


def publish(out: Path, db: Path, frames: dict[str, pd.DataFrame] | None = None):
    """Every week of the folder ``out`` into ``churnml_scores`` of the DuckDB file ``db``
    (``churnml score --out duckdb:...``'s own publisher); returns the DatabaseSource."""
    from churnml.data.sql import parse_source
    from churnml.jobs.sql_scores import publish_partition
    from churnml.ui.store import dimension_columns

    target = parse_source(f"duckdb://{db}")
    for as_of, part in list_partitions(out):
        names = pq.read_schema(part / "scores.parquet").names
        dims = [c[len("health_"):] for c in dimension_columns(names)]
        publish_partition(target, part / "scores.parquet", as_of, dims)
    return target


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """``(scores folder, book folder, DuckDB source)``: three weeks by the weekly job, the
    same weeks in a DuckDB ``churnml_scores``."""
    root = tmp_path_factory.mktemp("ui_sources")
    out, data, _book = scored_site(root, WEEKS, chunk_size=16)
    return out, data, publish(out, root / "scores.duckdb")


def main_of(html: str) -> str:
    """A page without its footer (which names the source)."""
    return re.sub(r"<footer>.*?</footer>", "", html, flags=re.S)


def latest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(list_partitions(out)[-1][1] / "scores.parquet")


# --- the same pages from a DuckDB table -----------------------------------------------------

def test_duckdb_table_renders_the_same_pages_as_the_folder(scored):
    out, data, target = scored
    folder, table = client_for(out, data), client_for(target, data)
    frame = latest(out)
    ids = sorted(frame["account_id"])
    owner = frame["next_best_action"].dropna().iloc[0]["owner"]
    urls = ["/", f"/?as_of={WEEKS[0]}", "/accounts", "/accounts?sort=health_score&order=asc",
            "/accounts?sort=health_change", f"/accounts?health_tier={frame['health_tier'].iloc[0]}",
            "/accounts?alert=any", "/accounts?q=company%20c00", f"/accounts?as_of={WEEKS[1]}",
            "/accounts.csv", "/accounts.csv?sort=churn_probability&order=asc",
            f"/accounts/{ids[0]}", f"/accounts/{ids[5]}?as_of={WEEKS[1]}", "/accounts/NOPE",
            "/queue", f"/queue?owner={owner}", "/queue.csv", f"/queue.csv?owner={owner}",
            "/trust"]
    for url in urls:
        a, b = folder.get(url), table.get(url)
        assert a.status_code == b.status_code, url
        assert main_of(a.text) == main_of(b.text), url
    # the footer and the messages name the table and the database, not a folder
    assert "churnml_scores in duckdb:" in table.get("/").text
    r = table.get("/?as_of=2020-01-01")
    assert r.status_code == 404 and "2020-01-01 is not scored in churnml_scores" in r.text


def test_duckdb_list_frames_and_account_rows_equal_the_folders(scored):
    from churnml.ui.store import ScoreStore

    out, _data, target = scored
    folder, table = ScoreStore(out), ScoreStore(target)
    fw, tw = folder.weeks(), table.weeks()
    assert [w.as_of for w in fw] == [w.as_of for w in tw] == [pd.Timestamp(w) for w in WEEKS]
    for a, b in zip(fw, tw):
        pd.testing.assert_frame_equal(folder.frame(a), table.frame(b))
    ids = latest(out)["account_id"]
    for account in (ids.iloc[0], ids.iloc[-1]):
        row_a, row_b = folder.account_row(fw[-1], account), table.account_row(tw[-1], account)
        assert row_a == row_b and row_a is not None
        assert isinstance(row_b["next_best_action"], dict)
        assert isinstance(row_b["churn_reasons"], list)
    assert table.account_row(tw[-1], "NOPE") is None
    assert table.account_row(tw[-1], "x' OR '1'='1") is None  # a bound parameter
    assert table.account_row(tw[-1], "a\x00b") is None


def test_duckdb_list_frame_reads_no_reasons(scored, monkeypatch):
    """The accounts pages read the list columns only: the table's reasons never leave the
    database for them."""
    from churnml.ui import sql_source
    from churnml.ui.store import ScoreStore

    _out, _data, target = scored
    queries: list[str] = []
    real = sql_source.SqlSource._run

    def spy(self, sql, params=()):
        queries.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(sql_source.SqlSource, "_run", spy)
    store = ScoreStore(target)
    store.frame(store.weeks()[-1])
    week_reads = [q for q in queries if "WHERE as_of =" in q]
    assert week_reads and not any("_reasons" in q for q in week_reads)


def test_a_week_rewritten_in_the_table_is_read_again(scored, tmp_path, monkeypatch):
    from churnml.jobs.sql_scores import publish_scores
    from churnml.ui import sql_source
    from churnml.ui.store import dimension_columns

    out, _data, _target = scored
    target = publish(out, tmp_path / "scores.duckdb")
    monkeypatch.setattr(sql_source, "LISTING_TTL_S", 0.0)
    client = client_for(target)
    frame = latest(out)
    assert f"${frame['mrr'].sum():,.0f}" in client.get("/").text
    import pyarrow.compute as pc

    table = pq.read_table(list_partitions(out)[-1][1] / "scores.parquet")
    doubled = table.set_column(table.schema.get_field_index("mrr"), "mrr",
                               pc.multiply(table.column("mrr"), 2.0))
    dims = [c[len("health_"):] for c in dimension_columns(table.column_names)]
    publish_scores(target, doubled, WEEKS[-1], dims)
    assert f"${2 * frame['mrr'].sum():,.0f}" in client.get("/").text


# --- a corrupt week file --------------------------------------------------------------------

def corrupt(out: Path, i: int, data: bytes = b"not a parquet file " * 8) -> Path:
    """Week ``i``'s scores.parquet replaced by ``data`` under a valid _SUCCESS marker (the
    marker records the size: a file that merely got cut is caught as incomplete already)."""
    as_of, part = list_partitions(out)[i]
    path = part / "scores.parquet"
    path.write_bytes(data)
    mark_complete(part, as_of, 34, ["scores.parquet"])
    return path


def test_a_corrupt_week_is_left_out_and_named_on_every_page(scored, tmp_path):
    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    good = (list_partitions(out)[1][1] / "scores.parquet").read_bytes()
    bad = corrupt(out, 1)
    client = client_for(out, scored[1])
    account = latest(out)["account_id"].iloc[0]
    for url in ("/", "/accounts", "/accounts.csv", f"/accounts/{account}", "/queue",
                "/queue.csv", "/trust", f"/?as_of={WEEKS[0]}"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        if r.headers["content-type"].startswith("text/html"):
            banner = r.text.split('id="unreadable"')[1].split("</div>")[0]
            assert str(bad) in banner and "Parquet" in banner, url
    # the weeks shown are the readable ones; the account's history skips the bad week
    html = client.get(f"/accounts/{account}").text
    assert f'value="{WEEKS[1]}"' not in client.get("/").text
    assert WEEKS[0] in html
    # asking for the bad week is a 404 page naming the file and the reason
    r = client.get(f"/accounts?as_of={WEEKS[1]}")
    assert r.status_code == 404 and "cannot be read" in r.text and str(bad) in r.text
    # fixed (rewritten): read again, the banner gone
    bad.write_bytes(good)
    mark_complete(bad.parent, WEEKS[1], 34, ["scores.parquet"])
    r = client.get("/")
    assert r.status_code == 200 and 'id="unreadable"' not in r.text
    assert f'value="{WEEKS[1]}"' in r.text


def test_a_week_file_without_the_needed_columns_is_left_out(scored, tmp_path):
    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    import io

    buffer = io.BytesIO()
    pd.DataFrame({"account_id": ["A"], "something": [1.0]}).to_parquet(buffer)
    bad = corrupt(out, 0, buffer.getvalue())
    html = client_for(out).get("/").text
    assert "no column(s) health_score, health_tier, mrr" in html and str(bad) in html


def test_nothing_readable_is_a_clear_404_page(scored, tmp_path):
    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    paths = [corrupt(out, i) for i in range(len(WEEKS))]
    client = client_for(out)
    for url in ("/", "/accounts", "/accounts.csv", "/accounts/C0001", "/queue", "/queue.csv"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "No readable week" in r.text and all(str(p) in r.text for p in paths), url
        assert "Traceback" not in r.text
    r = client.get("/trust")
    assert r.status_code == 200 and all(str(p) in r.text for p in paths)


# --- a database without the table, or another schema version ---------------------------------

def test_a_database_without_the_table_is_a_clear_404(tmp_path, monkeypatch):
    import duckdb

    from churnml.data.sql import parse_source

    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).execute("CREATE TABLE other (x INTEGER)").close()
    client = client_for(parse_source(f"duckdb://{db}"))
    for url in ("/", "/accounts", "/accounts/A", "/queue", "/queue.csv"):
        r = client.get(url)
        assert r.status_code == 404 and "no table churnml_scores" in r.text, url
    r = client.get("/trust")
    assert r.status_code == 200 and "no table churnml_scores" in r.text
    assert not (tmp_path / "home").exists()  # a reader creates no data home


def _table_from(frame: pd.DataFrame, db: Path):
    import duckdb

    from churnml.data.sql import parse_source

    con = duckdb.connect(str(db))
    con.register("incoming", frame)
    con.execute("CREATE TABLE churnml_scores AS SELECT * FROM incoming")
    con.close()
    return parse_source(f"duckdb://{db}")


def test_a_table_of_an_older_schema_version_shows_with_a_note(scored, tmp_path):
    """Schema version 1 (churn and expansion only, no queue): every page answers, a note names
    the version, as for a folder week of that version."""
    old = latest(scored[0])
    old = old.drop(columns=[c for c in old.columns if c.startswith("contraction_")
                            or c in ("mrr_at_risk_of_contraction", "expected_value",
                                     "queue_status", "queue_rank", "queue_reason", "holdout",
                                     "policy_version", "effect_source")])
    old["schema_version"] = np.int32(1)
    client = client_for(_table_from(old, tmp_path / "v1.duckdb"))
    account = old["account_id"].iloc[0]
    for url in ("/", "/accounts", "/accounts.csv", f"/accounts/{account}", "/queue",
                "/queue.csv", "/trust"):
        r = client.get(url)
        assert r.status_code == 200 and "Traceback" not in r.text, (url, r.text[:300])
    assert "output schema version 1" in client.get("/").text
    assert "have no queue" in client.get("/queue").text
    r = client.get("/accounts?sort=contraction_probability")
    assert r.status_code == 400 and "unknown sort" in r.text


def test_a_table_without_the_needed_columns_is_a_clear_404(scored, tmp_path):
    old = latest(scored[0])[["account_id", "as_of", "churn_probability"]]
    client = client_for(_table_from(old, tmp_path / "v0.duckdb"))
    for url in ("/", "/accounts", "/queue"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "has no column(s) health_score, health_tier, mrr" in r.text, url
        assert "another output schema version" in r.text


# --- credentials ----------------------------------------------------------------------------

def test_an_unreachable_database_is_a_503_page_without_the_password(caplog):
    import socket

    from churnml.data.sql import parse_source

    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "S3cretPassw0rd"
    target = parse_source(f"postgresql://churnml:{secret}@127.0.0.1:{port}/cs")
    client = client_for(target)
    for url in ("/", "/accounts", "/accounts/A", "/queue", "/trust"):
        r = client.get(url)
        assert r.status_code in (200, 503), (url, r.status_code)
        assert secret not in r.text and "churnml:***@" in r.text, url
    assert client.get("/").status_code == 503
    assert secret not in caplog.text


def test_cli_takes_a_database_url_and_never_prints_the_password(tmp_path, capsys, monkeypatch):
    from churnml.cli import main

    monkeypatch.delenv("CHURNML_API_KEY", raising=False)
    assert main(["ui", "--scores", f"duckdb://{tmp_path / 'missing.duckdb'}"]) == 2
    assert "no such DuckDB database file" in capsys.readouterr().err + capsys.readouterr().out
    code = main(["ui", "--scores", "postgresql://churnml:S3cretPw@127.0.0.1:1/cs"])
    printed = capsys.readouterr()
    assert code in (1, 2) and "S3cretPw" not in printed.out + printed.err
    assert "churnml:***@127.0.0.1:1/cs" in printed.out + printed.err
