"""``churnml ui``: every page over partitions written by the real weekly job (``score_book`` on
the small book of ``jobs_fakes``, three weeks), its numbers against a plain computation from the
parquet files, filters, sorting, pagination, CSV exports, escaping, sections that appear only
with their files, bad input and the API key."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnml.jobs.partitions import list_partitions, mark_complete, partition_dir
from jobs_fakes import tiny_book
from support.ui_site import WEEKS, scored_site  # tests/ is on sys.path (conftest.py)


def NO_REGISTRY():
    """The Trust page's registry answer in these tests: none (never the developer's store)."""
    from churnml.ui.evaluation import Evaluations

    return Evaluations(message="No model registry in this test.")


HOSTILE = '<script>alert("x")</script><b>Acme</b>'
FORMULA = "=HYPERLINK(\"http://evil\",\"click\")"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """``(scores_dir, data_dir)``: three weeks scored by the weekly job, and the book with
    account names (one holding markup, one a spreadsheet formula)."""
    out, data, _book = scored_site(tmp_path_factory.mktemp("ui"), WEEKS,
                                   names={0: HOSTILE, 1: FORMULA}, chunk_size=16)
    return out, data


@pytest.fixture(scope="module")
def client(scored):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    return TestClient(create_app(scored[0], scored[1], api_key="", registry=NO_REGISTRY))


def latest(scored) -> pd.DataFrame:
    return pd.read_parquet(list_partitions(scored[0])[-1][1] / "scores.parquet")


def week(scored, i) -> pd.DataFrame:
    return pd.read_parquet(list_partitions(scored[0])[i][1] / "scores.parquet")


def money(x) -> str:
    return f"${x:,.0f}"


def listed_ids(html: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'class="acct">([^<]*)</a>', html)]


def csv_of(response) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(response.text), dtype={"account_id": str})


# --- portfolio ------------------------------------------------------------------------------

def test_portfolio_kpis_and_tiers_equal_the_parquet(client, scored):
    scores = latest(scored)
    html = client.get("/").text
    assert f"{len(scores):,}" in html
    assert money(scores["mrr"].sum()) in html
    assert money(scores["mrr_at_risk"].sum()) in html
    assert money(scores["expected_expansion_mrr"].sum()) in html
    previous = week(scored, -2)
    for tier, rows in scores.groupby("health_tier"):
        change = len(rows) - int((previous["health_tier"] == tier).sum())
        cells = (f'tier-{tier}">{tier.replace("_", " ")}</span></td><td class="n">{len(rows)}'
                 f'</td><td class="n">{100 * len(rows) / len(scores):.1f}%</td>'
                 f'<td class="n">{change:+,}</td><td class="n">{money(rows["mrr"].sum())}</td>')
        assert cells in html, tier
    # the trend chart's data: accounts per tier for each scored week
    data = re.search(r'id="trend-data">(.*?)</script>', html).group(1)
    import json

    chart = json.loads(data)
    assert len(chart["x"]) == len(WEEKS)
    first = week(scored, 0)
    for s in chart["series"]:
        tier = s["label"].replace(" ", "_")
        assert (s["values"][0] or 0) == int((first["health_tier"] == tier).sum())


def test_portfolio_lists_whom_to_call_first_and_why(client, scored):
    """The top plays of the week's queue by expected value (queued, not held out), with
    owner, action and reason, equal to a plain pandas selection of the parquet."""
    from churnml.ui.app import CALL_FIRST_ROWS

    df = latest(scored)
    worked = df[df["queue_status"].eq("queued") & ~df["holdout"].fillna(False).astype(bool)]
    expected = worked.sort_values("account_id").sort_values(
        "expected_value", ascending=False, kind="stable").head(CALL_FIRST_ROWS)
    html = client.get("/").text
    table = html.split('id="call-first"')[1].split("</table>")[0]
    ids = [unescape(m) for m in re.findall(r'<a href="/accounts/[^"]*">([^<]*)</a>', table)]
    assert ids == expected["account_id"].tolist() and len(ids) > 0
    for _, r in expected.iterrows():
        a = r["next_best_action"]
        for text in (a["owner"], a["action"], a["reason"], money(r["expected_value"])):
            assert unescape(text) in unescape(table)
    # the previous scored week is 7 days before: "since last week"
    assert "Change since last week" in html


def test_change_is_labelled_with_the_previous_weeks_date_when_not_a_week_before(scored):
    from churnml.ui.views import since_label

    assert since_label(pd.Timestamp("2026-03-02"), pd.Timestamp("2026-02-23")) == "last week"
    assert since_label(pd.Timestamp("2026-03-02"), pd.Timestamp("2026-01-05")) == "2026-01-05"
    assert since_label(pd.Timestamp("2026-03-02"), None) is None


def test_portfolio_retention_equals_the_portfolio_metrics(client, scored):
    from churnml.jobs.portfolio import portfolio_metrics

    mrr = pd.read_parquet(scored[1] / "mrr_changes.parquet")
    html = client.get("/").text
    for weeks in (4, 13):
        m = portfolio_metrics(mrr, WEEKS[-1], weeks)
        assert (f"<td>last {weeks} weeks</td><td class=\"n\">{100 * m['nrr']:.1f}%</td>"
                f"<td class=\"n\">{100 * m['grr']:.1f}%</td>") in html


def test_portfolio_without_data_says_how_to_get_nrr(scored):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    html = TestClient(create_app(scored[0], None, api_key="")).get("/").text
    assert "churnml ui --data BOOK" in html and 'id="retention"' not in html


# --- accounts -------------------------------------------------------------------------------

def plain_view(scored, tier=None, q=None, sort="mrr_at_risk", ascending=False):
    scores = latest(scored)
    names = pd.read_parquet(scored[1] / "accounts.parquet").set_index("account_id")["name"]
    scores["name"] = scores["account_id"].map(names)
    if tier:
        scores = scores[scores["health_tier"] == tier]
    if q:
        hit = (scores["account_id"].str.lower().str.contains(q.lower(), regex=False)
               | scores["name"].str.lower().str.contains(q.lower(), regex=False))
        scores = scores[hit]
    return scores.sort_values([sort, "account_id"], ascending=[ascending, True],
                              na_position="last", kind="stable")


def test_accounts_default_sort_is_mrr_at_risk(client, scored):
    html = client.get("/accounts").text
    expected = plain_view(scored)["account_id"].tolist()
    assert listed_ids(html) == expected[:50]
    assert f"<strong>{len(expected)}</strong> of {len(expected)} accounts" in html


@pytest.mark.parametrize("sort,ascending", [("churn_probability", False),
                                            ("expansion_probability", True),
                                            ("health_score", True)])
def test_accounts_filter_and_sort(client, scored, sort, ascending):
    tier = latest(scored)["health_tier"].mode()[0]
    order = "asc" if ascending else "desc"
    r = client.get(f"/accounts?health_tier={tier}&sort={sort}&order={order}")
    assert r.status_code == 200
    expected = plain_view(scored, tier=tier, sort=sort, ascending=ascending)
    assert listed_ids(r.text) == expected["account_id"].tolist()[:50]


def test_accounts_sort_by_health_change_since_last_week(client, scored):
    now, before = latest(scored), week(scored, -2)
    change = now.set_index("account_id")["health_score"] - \
        before.set_index("account_id")["health_score"]
    change = change.reindex(now["account_id"])
    expected = (pd.DataFrame({"account_id": change.index, "c": change.to_numpy()})
                .sort_values(["c", "account_id"], na_position="last", kind="stable"))
    html = client.get("/accounts?sort=health_change&order=asc").text
    assert listed_ids(html) == expected["account_id"].tolist()[:50]


def test_text_search_on_id_and_name(client, scored):
    target = latest(scored)["account_id"].iloc[3]
    html = client.get(f"/accounts?q={target.lower()}").text
    assert listed_ids(html) == plain_view(scored, q=target)["account_id"].tolist()
    html = client.get("/accounts?q=company").text  # names only
    assert listed_ids(html) == plain_view(scored, q="company")["account_id"].tolist()[:50]
    assert len(listed_ids(html)) > 0


def test_pagination(client, scored, monkeypatch):
    from churnml.ui import views

    monkeypatch.setattr(views, "PAGE_SIZE", 7)
    expected = plain_view(scored)["account_id"].tolist()
    pages = -(-len(expected) // 7)
    seen = []
    for page in range(1, pages + 1):
        html = client.get(f"/accounts?page={page}").text
        seen += listed_ids(html)
        assert f"page {page} of {pages}" in html
    assert seen == expected
    # a page past the end shows the last one
    assert listed_ids(client.get("/accounts?page=999").text) == expected[(pages - 1) * 7:]


def test_alert_filter(client, scored):
    scores = latest(scored)
    with_alerts = scores[scores["alerts"].map(len) > 0]
    html = client.get("/accounts?alert=any&sort=health_score&order=asc").text
    expected = with_alerts.sort_values(["health_score", "account_id"], kind="stable")
    assert listed_ids(html) == expected["account_id"].tolist()[:50]
    if len(with_alerts):
        name = with_alerts["alerts"].iloc[0][0]
        html = client.get(f"/accounts?alert={name}&sort=health_score&order=asc").text
        has = scores[scores["alerts"].map(lambda a: name in list(a))]
        assert set(listed_ids(html)) == set(has["account_id"])


def test_csv_export_equals_the_filtered_view(client, scored):
    tier = latest(scored)["health_tier"].mode()[0]
    r = client.get(f"/accounts.csv?health_tier={tier}&sort=churn_probability&page=1")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    got = csv_of(r)
    expected = plain_view(scored, tier=tier, sort="churn_probability")
    assert got["account_id"].tolist() == expected["account_id"].tolist()  # every page
    np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"])
    np.testing.assert_allclose(got["mrr"], expected["mrr"])


def test_csv_export_neutralises_formulas(client, scored):
    got = csv_of(client.get("/accounts.csv?sort=mrr"))
    assert "'" + FORMULA in got["name"].tolist()
    assert not got["name"].astype(str).str.startswith(("=", "+", "@")).any()


def test_names_with_markup_are_escaped(client, scored):
    hostile_id = tiny_book()["accounts"]["account_id"].iloc[0]
    for url in ("/accounts?sort=mrr", f"/accounts/{hostile_id}", f"/accounts?q={hostile_id}"):
        r = client.get(url)
        if r.status_code == 404:  # churned before the latest week: not listed
            continue
        assert "<script>alert" not in r.text and "<b>Acme" not in r.text
    html = client.get(f"/accounts?q=acme").text
    if listed_ids(html):
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;Acme" in html


def test_hostile_query_values_are_4xx_pages(client):
    for url, status in [("/accounts?sort=__class__", 400), ("/accounts?page=abc", 400),
                        ("/accounts?page=-1", 400), ("/accounts?order=sideways", 400),
                        ("/?as_of=not-a-date", 404), ("/?as_of=1999-01-01", 404),
                        ("/accounts?health_tier=%3Cscript%3E", 200),
                        ("/accounts?q=%27%3B--%3Cimg%20src%3Dx%3E", 200),
                        ("/accounts/%3Cscript%3Ex", 404), ("/nope", 404)]:
        r = client.get(url)
        assert r.status_code == status, url
        assert "<script>" not in r.text and "Traceback" not in r.text


# --- account --------------------------------------------------------------------------------

def test_account_page_history_reasons_action_revenue(client, scored):
    scores = latest(scored)
    row = scores.sort_values("churn_probability", ascending=False).iloc[0]
    html = client.get(f"/accounts/{row['account_id']}").text
    for i, as_of in enumerate(WEEKS):
        w = week(scored, i).set_index("account_id")
        if row["account_id"] in w.index:
            h = w.loc[row["account_id"], "health_score"]
            assert f"<tr><td>{as_of}</td><td class=\"n\">{h:,.0f}</td>" in html
    for reason in row["churn_reasons"]:
        assert unescape(reason["text"]) in unescape(html)
    assert unescape(row["next_best_action"]["reason"]) in unescape(html)
    assert f"{100 * row['churn_probability']:.0f}%" in html
    mrr = pd.read_parquet(scored[1] / "mrr_changes.parquet")
    for _, m in mrr[mrr["account_id"] == row["account_id"]].iterrows():
        assert f"<td>{m['effective_date']:%Y-%m-%d}</td><td class=\"n\">{money(m['mrr'])}" in html
    import json

    chart = json.loads(re.search(r'id="account-data">(.*?)</script>', html).group(1))
    assert len(chart["x"]) == len(chart["health"]) == len(WEEKS)
    assert [s["label"] for s in chart["series"]] == [
        "Churn probability", "Expansion probability", "Contraction probability"]
    # the dimensions and the every-column table come from the schema
    assert "usage" in html and "engagement" in html
    assert "<code>mrr_at_risk</code>" in html and "churn_probability x mrr" in html


def test_unknown_account_is_a_404_page(client):
    r = client.get("/accounts/NO-SUCH-ACCOUNT")
    assert r.status_code == 404 and "is not scored in the week of" in r.text


# --- queue ----------------------------------------------------------------------------------

def test_queue_in_owner_order_with_holdouts_and_csv(client, scored):
    scores = latest(scored)
    owners = scores["next_best_action"].map(lambda a: a["owner"])
    queued = scores.assign(owner=owners)[scores["queue_status"].notna()]
    expected = queued.sort_values(["owner", "queue_rank", "account_id"], kind="stable")
    assert len(expected) > 0
    html = client.get("/queue").text
    links = re.findall(r'<td class="n">(\d+)</td>\n<td><a href="/accounts/([^"?]+)\?', html)
    shown = [acc for _rank, acc in links]
    # queued rows of each owner, then that owner's watch rows
    order = expected.assign(w=expected["queue_status"].ne("queued")).sort_values(
        ["owner", "w", "queue_rank", "account_id"], kind="stable")
    assert shown == order["account_id"].tolist()
    for owner, rows in expected.groupby("owner"):
        worked = rows[(rows["queue_status"] == "queued") & ~rows["holdout"].astype(bool)]
        assert money(worked["expected_value"].sum()) in html
        assert f"{len(worked)} of " in html
    if expected["holdout"].fillna(False).astype(bool).any():
        assert 'class="held queued"' in html
    got = csv_of(client.get("/queue.csv"))
    assert got["account_id"].tolist() == expected["account_id"].tolist()
    one = expected["owner"].iloc[0]
    got = csv_of(client.get("/queue.csv", params={"owner": one}))
    assert got["account_id"].tolist() == expected[expected["owner"] == one]["account_id"].tolist()


# --- trust and monitoring sections ----------------------------------------------------------

def realized_table(as_ofs) -> pd.DataFrame:
    from churnml.jobs.monitoring import REALIZED_COLUMNS

    rng = np.random.default_rng(3)
    rows = []
    for i, as_of in enumerate(as_ofs):
        for outcome in ("churn", "expansion"):
            for scorer in ("model", "health_score"):
                rows.append({"as_of": pd.Timestamp(as_of), "outcome": outcome, "scorer": scorer,
                             "horizon_days": 90, "matured_on": pd.Timestamp("2026-06-01"),
                             "model_version": "4", "in_sample": i == 0, "n": 30,
                             "positives": 5, "event_rate": 5 / 30,
                             "roc_auc": float(rng.uniform(0.6, 0.9)), "roc_auc_ci_low": 0.5,
                             "roc_auc_ci_high": 0.95, "lift_top_decile": float(rng.uniform(1, 3)),
                             "mrr_capture_top_decile": 0.3,
                             "ece": float(rng.uniform(0, .1)) if scorer == "model" else np.nan,
                             "calibration_slope": 1.0, "unlabeled_rows": 0})
    return pd.DataFrame(rows, columns=REALIZED_COLUMNS)


def test_trust_sections_appear_with_their_files(scored, tmp_path):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    client = TestClient(create_app(out, None, api_key="", registry=NO_REGISTRY))
    html = client.get("/trust").text
    assert "Not yet measured: <code>monitoring/realized.parquet</code>" in html and "monitoring-drift" not in html
    scores = latest(scored)
    # model versions per week, from the partitions' *_version columns
    assert f"<td>{WEEKS[-1]}</td>" in html
    assert scores["churn_model_version"].iloc[0] in html

    (out / "monitoring").mkdir()
    realized = realized_table(WEEKS)
    realized.to_parquet(out / "monitoring" / "realized.parquet")
    pd.DataFrame({"feature": ["nps_latest", "<i>x</i>"], "psi": [0.31, 0.02]}).to_parquet(
        out / "monitoring" / "drift.parquet")
    html = client.get("/trust").text
    assert 'id="monitoring-drift"' in html and "0.31" in html and "&lt;i&gt;x" in html
    oos = realized[~realized["in_sample"]]
    for (outcome, scorer), rows in oos.groupby(["outcome", "scorer"]):
        cells = (f"<td>{outcome}</td><td>{scorer.replace('_', ' ')}</td>"
                 f"<td class=\"n\">{rows['as_of'].nunique()}</td>"
                 f"<td class=\"n\">{rows['roc_auc'].mean():,.3f}</td>"
                 f"<td class=\"n\">{rows['lift_top_decile'].mean():,.2f}</td>")
        assert cells in html


def effects_table() -> pd.DataFrame:
    """Two plays as ``churnml effects`` writes them: one measured, one not yet (no unit has
    matured: every rate and effect NaN)."""
    from churnml.jobs.effects import EFFECT_COLUMNS

    base = {c: np.nan for c in EFFECT_COLUMNS}
    measured = {**base, "playbook": "exec_sponsor_call", "outcome": "churn", "horizon_days": 90,
                "worked_within_days": 14, "confidence": 0.95, "n_recommended": 120,
                "n_worked": 90, "n_holdout": 30, "n_immature": 12, "rate_recommended": 0.10,
                "rate_holdout": 0.20, "effect": 0.10, "effect_ci_low": 0.021,
                "effect_ci_high": 0.18, "effect_pp": 0.12, "nnt": 10.0,
                "mrr_saved_per_action": 410.0, "mrr_saved_to_date": 48_200.0,
                "verdict": "helps"}
    young = {**base, "playbook": "<b>training</b>", "outcome": "expansion", "horizon_days": 90,
             "worked_within_days": 14, "confidence": 0.95, "n_recommended": 0, "n_worked": 0,
             "n_holdout": 0, "n_immature": 40, "nnt": np.inf,
             "verdict": "not yet measurable"}
    return pd.DataFrame([measured, young], columns=EFFECT_COLUMNS)


def trust_client(scored, tmp_path, registry=NO_REGISTRY):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    return out, TestClient(create_app(out, None, api_key="", registry=registry))


def test_trust_shows_each_plays_measured_effect(scored, tmp_path):
    from churnml.jobs.effects import DIMENSION_COLUMNS, EFFECTS_DIR, EFFECTS_NAME

    out, client = trust_client(scored, tmp_path)
    r = client.get("/trust")
    assert r.status_code == 200 and 'id="effects-none"' in r.text
    assert "Not yet measured: <code>effects/effects.parquet</code>" in r.text

    (out / EFFECTS_DIR).mkdir()
    table = effects_table()
    table.iloc[:0].to_parquet(out / EFFECTS_DIR / EFFECTS_NAME)
    html = client.get("/trust").text
    assert "no play has been recommended in a scored week yet" in html

    table.to_parquet(out / EFFECTS_DIR / EFFECTS_NAME)
    dims = pd.DataFrame([{**{c: np.nan for c in DIMENSION_COLUMNS},
                          "dimension": "product_usage", "plays": "exec_sponsor_call",
                          "n_recommended": 120, "n_worked": 90, "n_holdout": 30,
                          "verdict": "helps"}], columns=DIMENSION_COLUMNS)
    dims.to_parquet(out / EFFECTS_DIR / "dimensions.parquet")
    html = client.get("/trust").text
    rows = re.findall(r"<tr>(.*?)</tr>", html.split('id="effects"')[1].split("</table>")[0],
                      re.S)[1:]
    assert len(rows) == 2
    first = re.sub(r"\s+", " ", rows[0])
    # the measured play: rates, effect in points with its interval, MRR saved, verdict
    for text in ("exec sponsor call", "120 (90)", ">30<", ">12<", "10.0% / 20.0%",
                 "+10.0 [+2.1, +18.0]", "$48,200", "helps"):
        assert text in first, text
    assert 'class="n up"' in first  # the interval excludes zero on the good side
    second = re.sub(r"\s+", " ", rows[1])
    assert "&lt;b&gt;training&lt;/b&gt;" in second and "recommendations per" not in second
    assert "10.0 recommendations per outcome changed" in first and "$410 per action" in first
    assert "worked vs held out: +12.0" in first
    assert "– / –" in second and "not yet measurable" in second
    # MRR saved to date over the measured plays only
    assert 'id="effects-saved">$48,200<' in html and "1 measured play (of 2)" in html
    assert 'id="effects-proven">1<' in html
    assert 'id="effects-dimensions"' in html and "product usage" in html

    # an unreadable file: the page says which, never a 5xx
    (out / EFFECTS_DIR / EFFECTS_NAME).write_bytes(b"not parquet")
    r = client.get("/trust")
    assert r.status_code == 200 and "effects.parquet could not be read" in r.text


def test_trust_shows_the_registry_evaluation_of_each_version(scored, tmp_path):
    from churnml.ui.evaluation import EVALUATION_METRICS, Evaluations

    row = {"outcome": "churn", "title": "Churn", "version": "3", "aliases": "champion",
           "created": "2026-03-01", "train_end": "2025-11-30", "test_roc_auc": 0.8123,
           "test_roc_auc_ci_low": 0.78, "test_roc_auc_ci_high": 0.84, "test_pr_auc": 0.41,
           "test_lift_top_decile": 3.456, "test_ece": 0.012, "test_brier": np.nan,
           "backtest_roc_auc_mean": 0.799}
    _out, client = trust_client(scored, tmp_path, registry=lambda: Evaluations(rows=[row]))
    html = client.get("/trust").text
    table = html.split('id="evaluation"')[1].split("</table>")[0]
    for text in ("<td>Churn</td>", '<td class="n">3</td>', "<td>champion</td>",
                 "<td class=\"d\">2025-11-30</td>", "0.812 <span", "[0.780, 0.840]", "0.410", "3.46",
                 "0.012", "–", "0.799"):
        assert text in table, text
    assert table.count("<th>") == 5 + len(EVALUATION_METRICS)
    _out, client = trust_client(scored, tmp_path / "b", registry=lambda: Evaluations(
        message="The model registry could not be read (ConnectionError: <refused>)."))
    html = client.get("/trust").text
    assert 'id="evaluation-none"' in html and "&lt;refused&gt;" in html


def test_trust_says_when_a_model_has_no_matured_week_outside_its_training(scored, tmp_path):
    out, client = trust_client(scored, tmp_path)
    (out / "monitoring").mkdir()
    realized = realized_table(WEEKS)
    realized.loc[realized["outcome"].eq("churn") & realized["scorer"].eq("model"),
                 "in_sample"] = True
    realized.to_parquet(out / "monitoring" / "realized.parquet")
    html = client.get("/trust").text
    assert "No week scored by the model for churn has matured outside its training" in html
    realized["in_sample"] = realized["as_of"].eq(realized["as_of"].min())
    realized.to_parquet(out / "monitoring" / "realized.parquet")
    assert "has matured outside" not in client.get("/trust").text


def test_registry_reader_never_creates_a_store(tmp_path, monkeypatch):
    from churnml.ui.evaluation import CachedRegistry, read_registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    answer = read_registry()
    assert answer.rows == [] and "No model registry at" in answer.message
    assert not (tmp_path / "home").exists()
    calls = []
    cached = CachedRegistry(lambda: calls.append(1) or answer, ttl=60)
    assert cached() is answer and cached() is answer and calls == [1]


# --- bad input ------------------------------------------------------------------------------

def test_empty_scores_folder_is_a_clear_page(tmp_path):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    client = TestClient(create_app(tmp_path, None, api_key="", registry=NO_REGISTRY))
    for url in ("/", "/accounts", "/queue"):
        r = client.get(url)
        assert r.status_code == 404 and "no complete weekly partition" in r.text
    assert client.get("/trust").status_code == 200


def test_a_week_of_an_older_schema_version(scored, tmp_path):
    """A week without the queue columns (schema version 2) shows with a note; the queue page
    says it has no queue."""
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    old = latest(scored).drop(columns=["expected_value", "queue_status", "queue_rank",
                                       "queue_reason", "holdout", "policy_version"])
    old["as_of"] = pd.Timestamp("2026-03-09")
    old["schema_version"] = np.int32(2)
    part = partition_dir(out, "2026-03-09")
    part.mkdir()
    old.to_parquet(part / "scores.parquet")
    mark_complete(part, "2026-03-09", len(old), ["scores.parquet"])
    client = TestClient(create_app(out, None, api_key="", registry=NO_REGISTRY))
    html = client.get("/").text
    assert "output schema version 2" in html
    assert client.get("/accounts").status_code == 200
    assert "have no queue" in client.get("/queue").text
    assert client.get(f"/accounts/{old['account_id'].iloc[0]}").status_code == 200
    assert client.get("/queue?as_of=2026-03-02").status_code == 200


def add_week(out: Path, frame: pd.DataFrame, as_of: str) -> None:
    frame = frame.copy()
    frame["as_of"] = pd.Timestamp(as_of)
    part = partition_dir(out, as_of)
    part.mkdir()
    frame.to_parquet(part / "scores.parquet")
    mark_complete(part, as_of, len(frame), ["scores.parquet"])


def test_a_week_of_schema_version_1_shows_on_every_page(scored, tmp_path):
    """Version 1 had churn and expansion only, and no queue: every page answers, the missing
    outcome and the queue are simply absent, and a note names the version."""
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    old = latest(scored)
    old = old.drop(columns=[c for c in old.columns if c.startswith("contraction_")
                            or c in ("mrr_at_risk_of_contraction", "expected_value",
                                     "queue_status", "queue_rank", "queue_reason", "holdout",
                                     "policy_version")])
    old["schema_version"] = np.int32(1)
    add_week(out, old, "2026-03-09")
    client = TestClient(create_app(out, scored[1], api_key="", registry=NO_REGISTRY))
    account = old["account_id"].iloc[0]
    for url in ("/", "/accounts", "/accounts?sort=churn_probability&order=asc",
                "/accounts.csv", f"/accounts/{account}", "/queue", "/queue.csv", "/trust",
                "/?as_of=2026-03-02", f"/accounts/{account}?as_of=2026-03-02"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        assert "Traceback" not in r.text
    assert "output schema version 1" in client.get("/").text
    assert "Contraction" not in client.get("/accounts").text
    # the older week has no contraction column: sorting by it is a clear 400, not a 5xx
    r = client.get("/accounts?sort=contraction_probability")
    assert r.status_code == 400 and "unknown sort" in r.text
    # the account's history spans the schema change
    html = client.get(f"/accounts/{account}").text
    assert "2026-03-09" in html and "2026-03-02" in html


def test_scores_folder_removed_or_emptied_while_serving(scored, tmp_path):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    client = TestClient(create_app(out, scored[1], api_key="", registry=NO_REGISTRY))
    assert client.get("/accounts").status_code == 200
    for part in list_partitions(out):
        shutil.rmtree(part[1])
    for url in ("/", "/accounts", "/accounts.csv", "/accounts/C0001", "/queue", "/queue.csv"):
        r = client.get(url)
        assert r.status_code == 404 and "no complete weekly partition" in r.text, url
    assert client.get("/trust").status_code == 200
    shutil.rmtree(out)
    for url in ("/", "/accounts", "/accounts/C0001", "/queue", "/trust"):
        r = client.get(url)
        assert r.status_code in (200, 404) and "Traceback" not in r.text, (url, r.status_code)


HOSTILE_VALUES = ['<script>alert(1)</script>', "' OR 1=1 --", "..%2F..%2Fetc%2Fpasswd",
                  "%00", "a" * 5000, ".*(", "[", "\\", "%E2%80%AE", "%FF%FE", "1e309",
                  "{{7*7}}", "__class__"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_values_in_every_parameter_are_never_5xx(client, value):
    """Every parameter of every page with values an attacker or a bad link would send: a page
    or a 4xx, never a 5xx, a traceback, an unescaped reflection or a template evaluated."""
    params = ["q", "health_tier", "action_owner", "segment", "value_tier", "alert", "sort",
              "order", "page", "as_of", "owner"]
    urls = [f"/accounts?{p}={value}" for p in params]
    urls += [f"/accounts.csv?{p}={value}" for p in params]
    urls += [f"/queue?owner={value}", f"/queue.csv?owner={value}", f"/?as_of={value}",
             f"/trust?as_of={value}", f"/accounts/{value}"]
    for url in urls:
        r = client.get(url)
        assert r.status_code < 500, (url, r.status_code, r.text[:300])
        if not r.headers["content-type"].startswith("text/html"):
            continue  # a CSV export (the book's own hostile names are its content)
        assert "Traceback" not in r.text and "<script>alert" not in r.text, url
        assert ">49<" not in r.text, url
        if r.status_code >= 400:
            assert "<h1>" in r.text, url  # a page that says what is wrong


def test_incomplete_partition_is_left_out(scored, tmp_path):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    out = tmp_path / "scores"
    shutil.copytree(scored[0], out)
    (partition_dir(out, WEEKS[-1]) / "_SUCCESS").unlink()
    html = TestClient(create_app(out, None, api_key="")).get("/").text
    assert f"week of {WEEKS[-2]}" in html and "Left out as incomplete" in html


# --- access ---------------------------------------------------------------------------------

def test_api_key_asks_for_login_or_bearer(scored):
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    client = TestClient(create_app(scored[0], None, api_key="s3cret"), follow_redirects=False)
    r = client.get("/accounts")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/accounts.csv").status_code == 303
    assert client.get("/accounts", headers={"Authorization": "Bearer wrong"}).status_code == 303
    assert client.get("/accounts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/login", data={"key": "nope"}).status_code == 401
    r = client.post("/login", data={"key": "s3cret"})
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "s3cret" not in r.headers["set-cookie"]  # an HMAC under the key, not the key
    assert client.get("/accounts").status_code == 200  # the cookie
    assert client.get("/static/ui.css").status_code == 200


def test_security_headers_and_only_local_assets(client):
    r = client.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    templates = Path(__file__).resolve().parents[2] / "src/churnml/ui/templates"
    for path in templates.glob("*.html"):
        text = path.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), path.name
        assert "<script>" not in text.replace('<script type="application/json"', ""), path.name


def test_vendored_files_match_their_recorded_checksums():
    static = Path(__file__).resolve().parents[2] / "src/churnml/ui/static"
    recorded = dict(re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|",
                               (static / "VENDORED.md").read_text()))
    assert set(recorded) >= {"uPlot.iife.min.js", "uPlot.min.css", "htmx.min.js"}
    for name, digest in recorded.items():
        assert hashlib.sha256((static / name).read_bytes()).hexdigest() == digest, name


def test_cli_refuses_an_open_address_without_a_key(tmp_path, monkeypatch):
    from churnml.cli import main

    monkeypatch.delenv("CHURNML_API_KEY", raising=False)
    assert main(["ui", "--scores", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert main(["ui", "--scores", str(tmp_path / "missing")]) == 2
