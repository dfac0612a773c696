"""The ``churnml ui`` web application (Starlette + Jinja2, server-rendered, read-only).

Pages: ``/`` portfolio, ``/accounts`` (+ ``/accounts.csv``), ``/accounts/{id}``, ``/queue``
(+ ``/queue.csv``), ``/trust``; ``/static/`` the vendored scripts (``static/VENDORED.md``).
Every value goes through Jinja2's autoescaping; CSV exports go through
:func:`churnml.data.csv_safety.neutralise_frame`. With ``CHURNML_API_KEY`` set, every page
asks for the key (a login form setting a cookie, or ``Authorization: Bearer <key>`` as for the
HTTP service). Responses carry a Content-Security-Policy that allows this server only.
"""

from __future__ import annotations

import hmac
import io
import math
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode

import numpy as np
import pandas as pd

from churnml.api.auth import bearer_matches, configured_api_key
from churnml.data.csv_safety import neutralise_frame
from churnml.ui import views
from churnml.ui.evaluation import EVALUATION_METRICS, CachedRegistry, Evaluations, effects_summary
from churnml.ui.store import (
    NotScored,
    ScoreStore,
    SourceUnavailable,
    UnreadableWeek,
    column_meanings,
    dimension_columns,
    outcome_columns,
)

HERE = Path(__file__).resolve().parent
COOKIE = "churnml_ui_key"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")

#: times a page is built again, each time without a week found unreadable while building it
MAX_REBUILDS = 60
#: rows of the portfolio's "call first this week" list
CALL_FIRST_ROWS = 10
#: rows shown per owner on the queue page (queued, then on watch); the CSV has them all
QUEUE_ROWS_SHOWN = 200
WATCH_ROWS_SHOWN = 25
#: list-frame columns of the CSV exports, in order (those present)
ACCOUNT_CSV_FIRST = ("account_id", "name", "as_of", "health_score", "health_tier",
                     "health_change")


def _money(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    x = float(value)
    return f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}"


def _pct(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


def _num(value: Any, digits: int = 0, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:+,}" if signed else f"{value:,}"
    return f"{float(value):{'+' if signed else ''},.{digits}f}"


def _pts(value: Any) -> str:
    """A difference of rates in signed percentage points (``0.031`` -> ``+3.1``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(x) else f"{100 * x:+.1f}"


def _date(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{pd.Timestamp(value):%Y-%m-%d}"


def _label(value: Any) -> str:
    """``needs_attention`` -> ``needs attention``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(value).replace("_", " ")


def _cell(value: Any) -> str:
    """Any value of a generic table (monitoring files, every-column table)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:,.4g}"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}" if value == value.normalize() else str(value)
    try:
        if pd.isna(value):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(value)


def templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(("html",), default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(money=_money, pct=_pct, num=_num, date=_date, label=_label, cell=_cell,
                       pts=_pts)
    env.globals["urlencode"] = urlencode
    env.globals["inf"] = float("inf")
    return env


def session_token(key: str) -> str:
    """The login cookie's value: an HMAC of a fixed text under the key (the key itself never
    reaches the browser's cookie store; changing the key signs everyone out)."""
    import hashlib

    return hmac.new(key.encode(), b"churnml-ui-session", hashlib.sha256).hexdigest()


def create_app(scores_dir: Any, data_dir: str | Path | None = None,
               api_key: str | None = None,
               registry: Callable[[], Evaluations] | None = None):
    """The Starlette application over ``scores_dir``: an output folder, or a database URL
    (text or :class:`churnml.data.sql.DatabaseSource`) whose ``churnml_scores`` table holds the
    weeks (:func:`churnml.ui.store.open_source`) (``api_key``: None reads
    ``CHURNML_API_KEY`` when the app is made; empty string: no key; ``registry``: what the
    Trust page shows of the model versions' evaluation, by default the MLflow registry's
    answer, cached a minute: :mod:`churnml.ui.evaluation`)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    store = ScoreStore(scores_dir, data_dir)
    evaluations = registry if registry is not None else CachedRegistry()
    env = templates()
    key = configured_api_key() if api_key is None else (api_key or None)

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("nav", name.split(".")[0])
        context.setdefault("scores_dir", store.description)
        context.setdefault("unreadable", [b for b in store.banner()
                                          if b != context.get("message")])
        if context.get("week") is not None and context.get("weeks"):
            before = [w.as_of for w in context["weeks"] if w.as_of < context["week"].as_of]
            context.setdefault("since", views.since_label(context["week"].as_of,
                                                          before[-1] if before else None))
        html = env.get_template(name).render(request=request, **context)
        return HTMLResponse(html, status_code=status)

    def problem(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return page(request, "problem.html", status=status, title=title, message=message,
                    nav="")

    def pick_week(request: Request):
        return store.week_for(request.query_params.get("as_of") or None)

    def csv_response(frame: pd.DataFrame, filename: str) -> Response:
        buffer = io.StringIO()
        neutralise_frame(frame).to_csv(buffer, index=False)
        return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{filename}"'})

    def schema_note(frame: pd.DataFrame) -> str | None:
        version = frame.attrs.get("schema_version")
        if version is not None and version < views_schema_version():
            return (f"This week was written by output schema version {version} (current: "
                    f"{views_schema_version()}); columns added since are not shown for it.")
        return None

    async def portfolio(request: Request):
        week, prev, weeks = pick_week(request)
        frame = store.view(week, prev)
        trend = store.trend(weeks)
        tiers = views.tier_table(store.trend([week]),
                                 store.trend([prev]) if prev is not None else None)
        tier_names = [t for t in tiers["tier"]]
        tier_names += sorted(set(trend["health_tier"]) - set(tier_names))
        chart: dict[str, Any] = {"x": [int(pd.Timestamp(w.as_of).timestamp()) for w in weeks],
                                 "series": []}
        pivot_accounts = trend.pivot_table(index="as_of", columns="health_tier",
                                           values="accounts", aggfunc="sum").reindex(
                                               [w.as_of for w in weeks])
        pivot_mrr = trend.pivot_table(index="as_of", columns="health_tier", values="mrr",
                                      aggfunc="sum").reindex([w.as_of for w in weeks])
        for t in tier_names:
            col = pivot_accounts[t] if t in pivot_accounts else pd.Series(dtype=float)
            chart["series"].append({"label": t.replace("_", " "),
                                    "values": [None if pd.isna(v) else int(v) for v in col]})
        retention = None
        book = store.book()
        if "mrr_changes" in book:
            from churnml.jobs.portfolio import portfolio_table

            retention = portfolio_table(book["mrr_changes"], week.as_of).to_dict("records")
        first = views.call_first(frame, CALL_FIRST_ROWS)
        return page(request, "portfolio.html", week=week, weeks=weeks, kpis=views.kpis(frame),
                    call_first=first.to_dict("records"), has_queue="queue_status" in frame,
                    tiers=tiers.to_dict("records"), chart=chart, retention=retention,
                    trend_accounts=pivot_accounts.fillna(0), trend_mrr=pivot_mrr.fillna(0),
                    tier_names=tier_names, has_data=store.data_dir is not None,
                    note=schema_note(frame), skipped=store.skipped())

    def account_view(request: Request):
        week, prev, weeks = pick_week(request)
        frame = store.view(week, prev)
        query = views.AccountQuery.parse(request.query_params, frame.columns)
        return week, weeks, frame, query, views.filter_positions(frame, query)

    async def accounts(request: Request):
        week, weeks, frame, query, positions = account_view(request)
        shown_at, page_no, pages = views.page_of(positions, query.page, views.PAGE_SIZE)
        shown, rows = frame.iloc[shown_at], positions
        query.page = page_no
        options = {c: sorted(str(v) for v in frame[c].dropna().unique())
                   for c, _ in views.SELECT_FILTERS if c in frame}
        return page(request, "accounts.html", week=week, weeks=weeks, query=query,
                    rows=shown.to_dict("records"), total=len(rows), all_total=len(frame),
                    page_no=page_no, pages=pages, filters=[(c, label, options[c]) for c, label
                                                           in views.SELECT_FILTERS if c in frame],
                    alerts=views.alert_names(frame), sorts=views.sort_keys(frame.columns),
                    outcomes=outcome_columns(frame.columns), note=schema_note(frame))

    async def accounts_csv(request: Request):
        week, _weeks, frame, _query, positions = account_view(request)
        rows = frame.iloc[positions]
        first = [c for c in ACCOUNT_CSV_FIRST if c in rows]
        rest = [c for c in rows.columns if c not in first and c != "search_text"]
        return csv_response(rows[first + rest], f"accounts_{week.as_of:%Y-%m-%d}.csv")

    async def account(request: Request):
        account_id = request.path_params["account_id"]
        week, prev, weeks = pick_week(request)
        row = store.account_row(week, account_id)
        if row is None:
            return problem(request, 404, "Account not found",
                           f"Account {account_id!r} is not scored in the week of "
                           f"{week.as_of:%Y-%m-%d}.")
        view = store.view(week, prev)
        ids = view["account_id"].to_numpy()  # sorted (ScoreStore.frame)
        at = int(np.searchsorted(ids, account_id))
        listed = {c: view[c].iat[at] for c in view.columns} \
            if at < len(ids) and ids[at] == account_id else {}
        outcomes = outcome_columns(view.columns)
        history = store.history(account_id, weeks, ["as_of", "health_score", "health_tier",
                                                    "mrr", "alerts_text"]
                                + [o["probability"] for o in outcomes])
        chart = {"x": [int(pd.Timestamp(t).timestamp()) for t in history["as_of"]],
                 "health": [None if pd.isna(v) else round(float(v), 2)
                            for v in history["health_score"]],
                 "series": [{"label": f"{o['title']} probability",
                             "values": [None if pd.isna(v) else round(float(v), 4)
                                        for v in history[o["probability"]]]}
                            for o in outcomes]}
        revenue = None
        book = store.book()
        if "mrr_changes" in book:
            m = book["mrr_changes"]
            revenue = m[m["account_id"] == account_id].sort_values("effective_date").tail(24)
            revenue = revenue.iloc[::-1].to_dict("records")
        meanings = column_meanings(list(row))
        dims = [{"name": c[len("health_"):], "score": row.get(c),
                 "meaning": meanings[c].meaning} for c in dimension_columns(list(row))]
        scalars = [{"name": c, "value": v, "meaning": meanings[c].meaning if c in meanings
                    else "not declared in this version's output schema"}
                   for c, v in row.items() if not isinstance(v, (list, dict))]
        return page(request, "account.html", week=week, weeks=weeks, row=row, listed=listed,
                    outcomes=outcomes, chart=chart, history=history.iloc[::-1].to_dict("records"),
                    revenue=revenue, has_data=store.data_dir is not None, dims=dims,
                    scalars=scalars, nav="accounts")

    def queue_view(request: Request):
        week, prev, weeks = pick_week(request)
        frame = store.view(week, prev)
        owner = request.query_params.get("owner", "")[:200]
        return week, weeks, frame, owner, views.queue_frame(frame, owner)

    async def queue(request: Request):
        week, weeks, frame, owner, rows = queue_view(request)
        from churnml.scoring.actions import load_playbooks

        try:
            capacity = dict(load_playbooks().capacity)
        except Exception:  # noqa: BLE001 - a broken playbooks file must not hide the queue
            capacity = {}
        groups = []
        if "queue_status" in rows:
            owner_of = rows["action_owner"].astype(str).to_numpy()
            status = rows["queue_status"].astype(str).to_numpy()
            for o in views.queue_owners(rows, capacity):
                mine = owner_of == o["owner"]
                queued = rows[mine & (status == "queued")]
                watch = rows[mine & (status != "queued")]
                groups.append({**o, "queued": queued.head(QUEUE_ROWS_SHOWN).to_dict("records"),
                               "queued_total": len(queued),
                               "watch": watch.head(WATCH_ROWS_SHOWN).to_dict("records"),
                               "watch_total": len(watch)})
        all_owners = sorted(str(v) for v in views.queue_frame(frame)["action_owner"]
                            .dropna().unique()) if "action_owner" in frame else []
        return page(request, "queue.html", week=week, weeks=weeks, groups=groups, owner=owner,
                    all_owners=all_owners, has_queue="queue_status" in frame,
                    note=schema_note(frame))

    async def queue_csv(request: Request):
        week, _weeks, _frame, _owner, rows = queue_view(request)
        first = [c for c in ("action_owner", "queue_rank", "queue_status", "holdout",
                             "account_id", "name", "action_playbook", "action_action",
                             "expected_value", "queue_reason", "action_reason")
                 if c in rows]
        return csv_response(rows[first + [c for c in rows.columns
                                          if c not in first and c != "search_text"]],
                            f"queue_{week.as_of:%Y-%m-%d}.csv")

    async def trust(request: Request):
        weeks = store.weeks()
        frames = {w.as_of: store.frame(w) for w in weeks}
        versions = views.model_versions(frames)
        problems: list[str] = []
        realized, bad = store.realized()
        if bad:
            problems.append(bad)
        summary = views.realized_summary(realized) if realized is not None else None
        not_yet: list[str] = []
        if summary is not None and not summary.empty:
            with_model = set(summary.loc[summary["scorer"].eq("model"), "outcome"])
            not_yet = [str(o).replace("_", " ") for o in sorted(set(summary["outcome"]))
                       if o not in with_model]
        recent = None
        if realized is not None and not realized.empty:
            recent = realized.sort_values(["as_of", "outcome", "scorer"], ascending=[False, True,
                                                                                     True])
            recent = recent.head(60)
        others = []
        for name, path in store.monitoring_files().items():
            if name == "realized":
                continue
            data, bad = store.read_optional(path)
            if data is None:
                problems.append(bad or f"{path.name} disappeared while the page was built")
                continue
            others.append({"name": name, "title": name.replace("_", " ").capitalize(),
                           "columns": list(data.columns), "rows": data.head(200).to_dict("records"),
                           "total": len(data)})
        effects, dimensions, bad = store.effects()
        if bad:
            problems.append(bad)
        return page(request, "trust.html", versions=versions, summary=summary, recent=recent,
                    others=others, weeks=weeks, problems=problems,
                    effects=None if effects is None else effects.to_dict("records"),
                    effects_head=None if effects is None else effects_summary(effects),
                    dimensions=None if dimensions is None else dimensions.to_dict("records"),
                    evaluations=evaluations(), metrics=EVALUATION_METRICS,
                    not_yet_out_of_sample=not_yet)

    async def login(request: Request):
        if request.method == "POST":
            body = (await request.body())[:4096].decode("utf-8", "replace")
            given = parse_qs(body).get("key", [""])[0]
            if key is not None and hmac.compare_digest(given.encode(), key.encode()):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(COOKIE, session_token(key), httponly=True,
                                    samesite="strict")
                return response
            return page(request, "login.html", status=401, failed=True, nav="")
        return page(request, "login.html", failed=False, nav="")

    class Guard:
        """Security headers on every response; with a key, every path but ``/login`` and
        ``/static/`` needs it (cookie or bearer header)."""

        def __init__(self, app) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            path = scope.get("path", "")

            async def send_with_headers(message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers += [(b"content-security-policy", CSP.encode()),
                                (b"x-content-type-options", b"nosniff"),
                                (b"referrer-policy", b"no-referrer"),
                                (b"x-frame-options", b"DENY")]
                    message = {**message, "headers": headers}
                await send(message)

            if key is not None and path != "/login" and not path.startswith("/static/"):
                headers = dict(scope.get("headers", ()))
                ok = bearer_matches(headers.get(b"authorization"), key)
                if not ok:
                    from http.cookies import SimpleCookie

                    cookie: SimpleCookie = SimpleCookie()
                    try:
                        cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
                    except Exception:  # noqa: BLE001 - a malformed cookie is no key
                        cookie = SimpleCookie()
                    given = cookie[COOKIE].value if COOKIE in cookie else ""
                    ok = hmac.compare_digest(given.encode("utf-8", "replace"),
                                             session_token(key).encode())
                if not ok:
                    response = RedirectResponse("/login", status_code=303) \
                        if scope.get("method") == "GET" else Response("missing or invalid key",
                                                                      status_code=401)
                    await response(scope, receive, send_with_headers)
                    return
            await self.app(scope, receive, send_with_headers)

    async def on_lookup(request: Request, exc: Exception):
        text = str(exc)
        title = ("No readable week" if text.startswith("no readable week")
                 else "Week cannot be read" if " cannot be read: " in text else "No such week")
        return problem(request, 404, title, text)

    async def on_bad(request: Request, exc: Exception):
        return problem(request, 400, "Cannot show this view", str(exc))

    async def on_error(request: Request, exc: Exception):
        return problem(request, 500, "Something went wrong",
                       f"{type(exc).__name__}: the page could not be built from "
                       f"{store.description}. The server log has the details.")

    async def on_unavailable(request: Request, exc: Exception):
        return problem(request, 503, "The scores cannot be read right now", str(exc))

    async def on_unreadable(request: Request, exc: Exception):
        # every week the page needed turned out unreadable, one after the other
        return problem(request, 404, "No readable week", str(exc))

    async def on_http(request: Request, exc: Exception):
        status = getattr(exc, "status_code", 500)
        return problem(request, status, "Not found" if status == 404 else "Not allowed",
                       str(getattr(exc, "detail", "")))

    from starlette.exceptions import HTTPException

    def resilient(handler):
        """``handler`` built again without each week found unreadable while building it
        (the store has recorded the week: it is left out and named in the banner)."""
        import functools

        @functools.wraps(handler)
        async def wrapped(request: Request):
            for _ in range(MAX_REBUILDS):
                try:
                    return await handler(request)
                except UnreadableWeek:
                    continue
            return await handler(request)

        return wrapped

    routes = [
        Route("/", resilient(portfolio)), Route("/accounts", resilient(accounts)),
        Route("/accounts.csv", resilient(accounts_csv)),
        Route("/accounts/{account_id:path}", resilient(account)),
        Route("/queue", resilient(queue)),
        Route("/queue.csv", resilient(queue_csv)), Route("/trust", resilient(trust)),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        import threading

        # read every week into the caches while the first page is requested
        threading.Thread(target=store.warm, name="churnml-ui-warm", daemon=True).start()
        yield

    return Starlette(routes=routes, middleware=[Middleware(Guard)], lifespan=lifespan,
                     exception_handlers={NotScored: on_lookup, views.BadRequest: on_bad,
                                         SourceUnavailable: on_unavailable,
                                         UnreadableWeek: on_unreadable,
                                         HTTPException: on_http, Exception: on_error})


def views_schema_version() -> int:
    from churnml.scoring.schema import SCHEMA_VERSION

    return SCHEMA_VERSION
