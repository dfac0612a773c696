"""Books of business (and score tables) in a SQL database: PostgreSQL and DuckDB files.

``--data`` takes a database URL as well as a folder:

- ``postgresql://user@host:5432/dbname`` (also ``postgres://``, ``postgresql+psycopg://``):
  read through ADBC (``adbc-driver-postgresql``, libpq's binary COPY straight into Arrow). The
  password comes from the URL or, better, from libpq's environment (``PGPASSWORD``,
  ``PGPASSFILE`` / ``~/.pgpass``, ``PGSSLMODE``, ...), so it never has to be typed on a
  command line;
- ``duckdb:///absolute/path/book.duckdb``, ``duckdb:relative/book.duckdb`` or a path to an
  existing ``*.duckdb`` / ``*.ddb`` file: read with DuckDB itself (read-only).

The choice of ADBC and the figures behind it are in ``docs/data_contract.md`` ("Reading from a
database"). Table names are the contract's by default; ``CHURNML_SQL_CONFIG`` names a YAML file
that maps them (``tables: {usage_events: analytics.product_events}``) or gives a query per
table (``queries: {accounts: "SELECT id AS account_id, ... FROM crm.accounts"}``), see
:func:`load_sql_config`.

Each table arrives as Arrow record batches (streamed: ``fetch_record_batch``), is turned into
one pandas frame column by column, each column first given the Arrow type the parquet file
would hold (:func:`_to_pandas`), and handed to the same
:func:`~churnml.data.validation.validate_frames` as the files, so validation, rejects and counts
are those of a folder. PostgreSQL books are read in one snapshot, big tables in page ranges on
``CHURNML_SQL_READ_CONNECTIONS`` connections at once (default 2, :class:`ReadSession`). A :class:`DatabaseSource` prints (``str``, ``repr``, f-strings) with the
password replaced by ``***``; error messages from the drivers are scrubbed of it too, so it
reaches no log line and no MLflow parameter.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd

from churnml.data.tables import TABLES
from churnml.errors import ChurnMLError, ConfigError, SchemaError, UsageError, format_examples

__all__ = [
    "DatabaseSource", "DatabaseUnavailableError", "SqlConfig", "is_database_url", "parse_source",
    "load_sql_config", "read_tables", "connect", "quote_ident", "SQL_CONFIG_ENV",
    "read_arrow", "require_driver", "driver_error", "rollback_quietly", "is_connection_lost",
    "ReadSession", "READ_CONNECTIONS_ENV", "read_connections",
]

SQL_CONFIG_ENV = "CHURNML_SQL_CONFIG"
DUCKDB_SUFFIXES = (".duckdb", ".ddb")
_PG_SCHEMES = {"postgresql", "postgres"}
_DUCKDB_BATCH_ROWS = 1_000_000
READ_CONNECTIONS_ENV = "CHURNML_SQL_READ_CONNECTIONS"
DEFAULT_READ_CONNECTIONS = 2
SPLIT_MIN_BYTES = 64 << 20  # a PostgreSQL table this large is read in parts (ReadSession)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class DatabaseUnavailableError(ChurnMLError, ConnectionError):
    """The database could not be reached, refused the login, or went away mid-read (exit code
    1: the environment, not the input; a wrong password or unknown database is a
    :class:`~churnml.errors.UsageError` instead, exit code 2)."""

    exit_code = 1


@dataclass(frozen=True)
class DatabaseSource:
    """A database URL. ``str()`` / ``repr()`` / f-strings show it with the password as ``***``
    (:attr:`display`); the URL itself is :attr:`url`, for the driver only."""

    url: str = field(repr=False)
    kind: str  # "postgresql" | "duckdb"
    display: str
    password: str | None = field(default=None, repr=False)
    path: Path | None = None  # DuckDB: the database file

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"DatabaseSource({self.display!r})"

    def __format__(self, spec: str) -> str:
        return format(self.display, spec)

    def scrub(self, text: object) -> str:
        """``text`` with the URL and the password replaced (for error messages)."""
        out = str(text).replace(self.url, self.display)
        if self.password:
            out = out.replace(self.password, "***")
        return out

    @property
    def name(self) -> str:
        """A short name for files derived from the source (``<dbname>`` / the file's stem)."""
        if self.path is not None:
            return self.path.stem
        return (urlsplit(self.url).path.lstrip("/") or "postgres").replace("/", "_")


def is_database_url(value: object) -> bool:
    """True for a :class:`DatabaseSource` or text that names one (see the module doc)."""
    if isinstance(value, DatabaseSource):
        return True
    if not isinstance(value, str):
        return False
    m = _SCHEME.match(value)
    if m is not None and len(m.group(1)) > 1:  # "C:" is a drive, not a scheme
        scheme = m.group(1).lower().split("+")[0]
        return scheme in _PG_SCHEMES or scheme == "duckdb"
    return value.lower().endswith(DUCKDB_SUFFIXES) and Path(value).is_file()


def parse_source(value: str | Path | DatabaseSource) -> Path | DatabaseSource:
    """A ``--data`` / ``--out`` value: a folder path, or a :class:`DatabaseSource` for a database
    URL. An unknown ``scheme://`` is a :class:`UsageError` (exit code 2) that names the forms
    understood (never the password)."""
    if isinstance(value, (DatabaseSource, Path)):
        return value
    text = str(value).strip()
    m = _SCHEME.match(text)
    if m is not None and len(m.group(1)) > 1 and text[m.end():].startswith("//"):
        scheme = m.group(1).lower().split("+")[0]
        if scheme not in _PG_SCHEMES and scheme != "duckdb":
            shown = _redact(text)
            raise UsageError(
                f"unsupported database URL {shown!r}: use postgresql://user@host:port/dbname, "
                "duckdb:///path/to/book.duckdb, or a folder of <table>.parquet|.csv files")
    if not is_database_url(text):
        return Path(text)
    if text.lower().startswith("duckdb:") or not _SCHEME.match(text):
        raw = text[len("duckdb:"):] if text.lower().startswith("duckdb:") else text
        if raw.startswith("//"):
            raw = raw[2:]
        if not raw or raw == ":memory:":
            raise UsageError(f"duckdb URL {text!r} names no database file "
                             "(duckdb:///path/to/book.duckdb)")
        path = Path(unquote(raw)).expanduser()
        return DatabaseSource(url=str(path), kind="duckdb", display=f"duckdb:{path}", path=path)
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"bad database URL {_redact(text)!r}: the port is not a number") from None
    if not parts.hostname and not parts.path.strip("/"):
        raise UsageError(f"bad database URL {_redact(text)!r}: no host and no database name")
    # libpq wants postgresql:// (a "+driver" suffix is SQLAlchemy's, not libpq's)
    url = "postgresql://" + text.split("://", 1)[1]
    password = unquote(parts.password) if parts.password else None
    return DatabaseSource(url=url, kind="postgresql", display=_redact(url), password=password)


def _redact(url: str) -> str:
    """``scheme://user:***@host/...``: the password (and any ``password=`` query value) hidden."""
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", out)


def quote_ident(name: str) -> str:
    """A possibly schema-qualified name (``analytics.events``) as quoted SQL identifiers."""
    parts = name.split(".")
    if not all(parts):
        raise ConfigError(f"bad table name {name!r} in the SQL configuration")
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


@dataclass(frozen=True)
class SqlConfig:
    """Contract table -> database table (schema-qualified allowed), and optional queries.

    ``explicit``: the tables the configuration names (a missing one is an error even when the
    contract table is optional; a default name that is absent is just an absent table)."""

    tables: dict[str, str]
    queries: dict[str, str]
    explicit: frozenset[str] = frozenset()

    def source_of(self, table: str) -> str:
        return f"query for {table}" if table in self.queries else self.tables[table]


def load_sql_config(path: str | Path | None = None) -> SqlConfig:
    """The SQL table map: ``path`` or the file named by ``CHURNML_SQL_CONFIG``; defaults are
    the contract's table names. The file (YAML)::

        schema: analytics                    # optional: prefix of unqualified names
        tables:                              # optional: contract table -> database table
          usage_events: product_events
        queries:                             # optional: a SELECT per table, instead of a table
          accounts: SELECT id AS account_id, created_at, plan FROM crm.accounts
    """
    if path is None:
        env = os.environ.get(SQL_CONFIG_ENV, "").strip()
        path = Path(env) if env else None
    tables = {name: name for name in TABLES}
    if path is None:
        return SqlConfig(tables=tables, queries={})
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the SQL configuration {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'tables' and/or 'queries'")
    unknown_keys = sorted(set(raw) - {"schema", "tables", "queries"})
    if unknown_keys:
        raise ConfigError(f"{path}: unknown key(s) {unknown_keys}; expected schema, tables, queries")
    mapped = raw.get("tables") or {}
    queries = raw.get("queries") or {}
    if not isinstance(mapped, dict) or not isinstance(queries, dict):
        raise ConfigError(f"{path}: 'tables' and 'queries' must be mappings table -> text")
    bad = sorted((set(mapped) | set(queries)) - set(TABLES))
    if bad:
        raise ConfigError(f"{path}: {format_examples(bad)} are not tables of the data contract "
                          f"({', '.join(TABLES)})")
    schema = raw.get("schema")
    for name, target in mapped.items():
        tables[name] = str(target)
    if schema:
        tables = {k: v if "." in v else f"{schema}.{v}" for k, v in tables.items()}
    for name in tables:
        quote_ident(tables[name])  # a bad name fails here, not mid-read
    return SqlConfig(tables=tables, queries={k: str(v) for k, v in queries.items()},
                     explicit=frozenset(mapped) | frozenset(queries))


# -- connections -------------------------------------------------------------------------------

def connect(source: DatabaseSource, *, read_only: bool = True) -> Any:
    """A DB-API connection: ADBC for PostgreSQL (autocommit off), DuckDB's own for a file.

    Raises :class:`UsageError` (exit 2) for a wrong password, an unknown database or user, a
    missing DuckDB file; :class:`DatabaseUnavailableError` (exit 1) when the server cannot be
    reached. Messages never hold the password."""
    if source.kind == "duckdb":
        duckdb = require_driver("duckdb")
        assert source.path is not None
        if read_only and not source.path.is_file():
            raise UsageError(f"{source}: no such DuckDB database file")
        try:
            return duckdb.connect(str(source.path), read_only=read_only)
        except duckdb.Error as exc:
            raise UsageError(f"{source}: cannot open the DuckDB database: {exc}") from None
    pg = require_driver("adbc_driver_postgresql.dbapi")
    try:
        return pg.connect(source.url)
    except Exception as exc:  # noqa: BLE001 - mapped to the CLI's contract below
        raise _connect_error(source, exc) from None


def require_driver(module: str) -> Any:
    """Import ``module``, a driver of the ``sql`` extra (``"duckdb"``,
    ``"adbc_driver_postgresql.dbapi"``), or raise ``UsageError`` (exit code 2) saying how to
    install it. For every module that reads or writes a database."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"reading or writing a database needs {module.split('.')[0]}: "
                         "pip install 'churnml[sql]'") from None


_LOGIN_REFUSED = ("password authentication failed", "no password supplied",
                  "does not exist", "no pg_hba.conf entry", "authentication failed",
                  "invalid password", "role ")


def _connect_error(source: DatabaseSource, exc: Exception) -> ChurnMLError:
    message = source.scrub(exc)
    if any(s in message for s in _LOGIN_REFUSED):
        return UsageError(f"{source}: the database refused the login: {_driver_text(message)} "
                          "(check the user, the database name and the password: PGPASSWORD, "
                          "~/.pgpass or the URL)")
    return DatabaseUnavailableError(f"{source}: cannot connect: {_driver_text(message)}")


def _driver_text(message: str) -> str:
    """The useful part of an ADBC / libpq message, on one line."""
    message = re.sub(r"^(IO|INVALID_ARGUMENT|UNKNOWN|INTERNAL|NOT_FOUND): ", "", message.strip())
    message = message.replace("[libpq] ", "")
    return " ".join(message.split())


def driver_error(source: DatabaseSource, exc: BaseException) -> str:
    """A driver's error ``exc`` about ``source`` as text for a ``ChurnMLError``: the useful part
    of the ADBC / libpq / DuckDB message, on one line, with the source's password scrubbed
    (``DatabaseSource.scrub``). For every module that reads or writes a database."""
    return _driver_text(source.scrub(exc))


def _sqlstate(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    m = re.search(r"SQLSTATE:? ?([0-9A-Z]{5})", str(exc))
    return m.group(1) if m else ""


def _is_missing_relation(exc: BaseException) -> bool:
    text = str(exc)
    return (_sqlstate(exc) in ("42P01", "3F000")
            or ("Catalog Error" in text and ("does not exist" in text or "not found" in text))
            or bool(re.search(r'relation "[^"]*" does not exist', text)))


def is_connection_lost(exc: BaseException) -> bool:
    """Whether a driver's error ``exc`` means the database went away (SQLSTATE class 08, an
    administrator shutdown, a closed server connection), not a bad query."""
    text = str(exc).lower()
    return (_sqlstate(exc).startswith("08") or _sqlstate(exc) in ("57P01", "57P02", "57P03")
            or "server closed the connection" in text or "terminating connection" in text
            or "connection to server" in text or "no connection to the server" in text)


# -- reading -----------------------------------------------------------------------------------

def _select(source: DatabaseSource, config: SqlConfig, table: str) -> str:
    query = config.queries.get(table)
    if query is not None:
        return f"SELECT * FROM ({query.strip().rstrip(';')}) AS churnml_source"
    return f"SELECT * FROM {quote_ident(config.tables[table])}"


def _batches(conn: Any, source: DatabaseSource, sql: str) -> Generator[Any, None, None]:
    """The query's rows as Arrow record batches, one at a time."""
    cur = conn.cursor()
    try:
        if source.kind == "duckdb":  # DuckDB 2: a relation streams Arrow batches without a copy
            reader = cur.sql(sql).to_arrow_reader(_DUCKDB_BATCH_ROWS)
        else:  # ADBC
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        yield reader.schema
        yield from reader
    finally:
        try:
            cur.close()
        except Exception:  # noqa: BLE001 - a broken connection cannot close its cursor
            pass


def read_arrow(conn: Any, source: DatabaseSource, sql: str) -> Any:
    """The whole result of ``sql`` as one ``pyarrow.Table``, built from streamed batches
    (the result is never held twice: no row objects, no intermediate pandas frames)."""
    import pyarrow as pa

    stream = _batches(conn, source, sql)
    schema = next(stream)
    return pa.Table.from_batches(list(stream), schema=schema)


def _to_pandas(names: list[str], columns: list[Any]) -> pd.DataFrame:
    """Arrow to pandas, each column first given the Arrow type a parquet file of the book holds,
    so validation meets the frame the folder path gives it:

    - text as ``large_string`` in one chunk (PostgreSQL sends ``string`` in many batches; pandas'
      ``str`` dtype would widen it anyway, and its string kernels run about 1.5x slower over a
      column in many chunks than over one);
    - timestamps in nanoseconds when every value fits (PostgreSQL's are microseconds; a value
      outside the nanosecond range keeps the microseconds, for validation to set aside);
    - decimal as float64, dictionary as its values, date as a timestamp.

    ``columns`` (the table's columns, which the caller no longer holds otherwise) is emptied:
    each original is dropped as soon as its conversion exists, so at most one column is held
    twice, and pandas takes the converted columns over (``self_destruct``)."""
    import pyarrow as pa

    for i, column in enumerate(columns):
        t = column.type
        if pa.types.is_decimal(t):
            column = column.cast(pa.float64())
        elif pa.types.is_dictionary(t):
            column = column.cast(t.value_type)
        elif pa.types.is_date(t):
            column = column.cast(pa.timestamp("ns"))
        elif pa.types.is_timestamp(t) and t.unit != "ns":
            try:
                column = column.cast(pa.timestamp("ns", t.tz))  # safe: overflow raises
            except pa.ArrowInvalid:
                pass
        if pa.types.is_string(column.type):
            column = column.cast(pa.large_string())
        if isinstance(column, pa.ChunkedArray) and column.num_chunks > 1:
            column = column.combine_chunks()
        columns[i] = column
        del column
    frame_table = pa.Table.from_arrays(columns, names=names)
    columns.clear()
    return frame_table.to_pandas(self_destruct=True, split_blocks=True)


class ReadSession:
    """The connections that read one book: the main one, and for PostgreSQL up to
    ``connections - 1`` helpers opened on the first table worth splitting.

    PostgreSQL: the main connection reads in one ``REPEATABLE READ`` transaction (every table
    as of one instant) whose snapshot is exported (``pg_export_snapshot``) and imported by each helper (``SET TRANSACTION
    SNAPSHOT``), so every table, and every part of a split table, is read as of one instant. A
    plain table of at least :data:`SPLIT_MIN_BYTES` is read in ``connections`` ranges of its
    pages (``ctid`` ranges, a TID range scan from PostgreSQL 14), one per connection, in
    threads; the parts are put back together in page order, the order of a single sequential
    scan. The server serialises and the client decodes the parts at the same time, on as many
    cores. Configured queries, views and small tables are read whole on the main connection;
    so is everything when the snapshot cannot be exported (a server that does not support it)."""

    def __init__(self, conn: Any, source: DatabaseSource, connections: int = 1):
        self.conn, self.source = conn, source
        self.connections = max(1, int(connections))
        self.snapshot: str | None = None
        self._helpers: list[Any] = []

    def begin(self) -> None:
        """Start the reading transaction (PostgreSQL: the exported snapshot)."""
        if self.source.kind != "postgresql":
            return
        rollback_quietly(self.conn)
        cur = self.conn.cursor()
        try:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if self.connections >= 2:
                cur.execute("SELECT pg_export_snapshot()")
                self.snapshot = str(cur.fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - not every server exports snapshots
            if is_connection_lost(exc):
                raise DatabaseUnavailableError(
                    f"{self.source}: the database went away: {_driver_text(self.source.scrub(exc))}"
                ) from None
            rollback_quietly(self.conn)
            self.snapshot = None
        finally:
            _close_cursor(cur)

    def helpers(self) -> list[Any]:
        """The helper connections, opened (and joined to the snapshot) on first use."""
        while len(self._helpers) < self.connections - 1:
            helper = connect(self.source)
            self._helpers.append(helper)
            cur = helper.cursor()
            try:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
            finally:
                _close_cursor(cur)
        return self._helpers

    def split_pages(self, config: SqlConfig, table: str) -> int | None:
        """The number of pages of ``table`` when it is to be read in parts, else None."""
        if (self.snapshot is None or self.connections < 2 or table in config.queries):
            return None
        literal = "'" + quote_ident(config.tables[table]).replace("'", "''") + "'"
        cur = self.conn.cursor()
        try:
            cur.execute("SELECT c.relkind, pg_relation_size(c.oid), "
                        "current_setting('block_size')::int, "
                        "current_setting('server_version_num')::int "
                        f"FROM pg_class c WHERE c.oid = to_regclass({literal})")
            row = cur.fetchone()
        finally:
            _close_cursor(cur)
        if row is None:
            return None
        kind, size, block, version = row
        if kind != "r" or int(version) < 140000 or int(size) < SPLIT_MIN_BYTES:
            return None
        return int(size) // int(block)

    def close(self) -> None:
        for conn in [*self._helpers, self.conn]:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._helpers = []


def _close_cursor(cur: Any) -> None:
    try:
        cur.close()
    except Exception:  # noqa: BLE001 - a broken connection cannot close its cursor
        pass


def page_range_queries(select: str, pages: int, parts: int) -> list[str]:
    """``select`` (``SELECT * FROM t``) cut into ``parts`` queries over consecutive ranges of
    the table's ``pages`` (the last range open-ended: it also takes pages added since)."""
    bounds = [pages * i // parts for i in range(parts)]
    out = []
    for i, lo in enumerate(bounds):
        where = f" WHERE ctid >= '({lo},0)'::tid"
        if i + 1 < parts:
            where += f" AND ctid < '({bounds[i + 1]},0)'::tid"
        out.append(select + where)
    return out


def read_arrow_parts(connections: list[Any], source: DatabaseSource, queries: list[str]) -> Any:
    """The results of ``queries`` (one per connection, read at the same time in threads: the
    drivers decode without the GIL) as one ``pyarrow.Table``, in the order of ``queries``.
    An error in any part is raised once every part has stopped (a lost connection first)."""
    import threading

    import pyarrow as pa

    results: list[Any] = [None] * len(queries)
    errors: list[BaseException | None] = [None] * len(queries)

    def run(i: int) -> None:
        try:
            stream = _batches(connections[i], source, queries[i])
            schema = next(stream)
            results[i] = (schema, list(stream))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"churnml-sql-part-{i}")
               for i in range(1, len(queries))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    failed = [e for e in errors if e is not None]
    if failed:
        raise next((e for e in failed if is_connection_lost(e)), failed[0])
    schema = results[0][0]
    batches = [b for _, part in results for b in part]
    results.clear()
    return pa.Table.from_batches(batches, schema=schema)


class _SqlAsFrames(Mapping):
    """``{table: DataFrame}`` over a database, read when validation asks for the table (one
    table's raw rows in memory at a time, as for files)."""

    def __init__(self, session: ReadSession, config: SqlConfig, present: list[str]):
        self._session, self._config, self._present = session, config, present

    def __getitem__(self, table: str) -> pd.DataFrame:
        return read_frame(self._session, self._config, table)

    def __contains__(self, table: object) -> bool:
        return table in self._present

    def __iter__(self):
        return iter(self._present)

    def __len__(self) -> int:
        return len(self._present)


def read_frame(session: ReadSession, config: SqlConfig, table: str) -> pd.DataFrame:
    """One contract table from the database as a pandas frame (errors name the table)."""
    source = session.source
    try:
        select = _select(source, config, table)
        pages = session.split_pages(config, table)
        if pages is None:
            arrow = read_arrow(session.conn, source, select)
        else:
            connections = [session.conn, *session.helpers()]
            arrow = read_arrow_parts(connections, source,
                                     page_range_queries(select, pages, len(connections)))
    except ChurnMLError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to the CLI's contract
        raise _read_error(source, config, table, exc) from None
    names, columns = arrow.column_names, arrow.columns
    del arrow  # only ``columns`` holds the rows now: _to_pandas frees them as it goes
    return _to_pandas(names, columns)


def _read_error(source: DatabaseSource, config: SqlConfig, table: str, exc: Exception) -> ChurnMLError:
    text = driver_error(source, exc)
    where = config.source_of(table)
    if is_connection_lost(exc):
        return DatabaseUnavailableError(f"{table}: the database {source} went away while reading "
                                        f"{where}: {text}")
    if _is_missing_relation(exc):
        return SchemaError(f"{table}: table {where!r} not found in {source}: {text}")
    return SchemaError(f"{table}: cannot read {where} from {source}: {text}")


def present_tables(conn: Any, source: DatabaseSource, config: SqlConfig) -> list[str]:
    """The contract tables that exist in the database (tables, views or configured queries);
    a missing required or explicitly configured one is a :class:`SchemaError` naming it."""
    present, problems = [], []
    for table, spec in TABLES.items():
        try:
            stream = _batches(conn, source, _select(source, config, table) + " LIMIT 0")
            next(stream)
            stream.close()
            present.append(table)
        except Exception as exc:  # noqa: BLE001
            if source.kind == "postgresql":
                rollback_quietly(conn)
            if is_connection_lost(exc):
                raise _read_error(source, config, table, exc) from None
            if not _is_missing_relation(exc) and table in config.queries:
                raise _read_error(source, config, table, exc) from None
            if not _is_missing_relation(exc):
                raise _read_error(source, config, table, exc) from None
            if spec.required or table in config.explicit:
                problems.append(f"{table}: {'required ' if spec.required else ''}table "
                                f"{config.source_of(table)!r} not found in {source}"
                                + (f" (map it in the file named by {SQL_CONFIG_ENV})"
                                   if table not in config.explicit else ""))
    if problems:
        raise SchemaError("\n".join(problems))
    return present


def rollback_quietly(conn: Any) -> None:
    """Roll back ``conn``'s open transaction, ignoring a failure to (the connection may already
    be gone; the error that led here is the one to report)."""
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001
        pass


def read_connections() -> int:
    """How many connections read one PostgreSQL table at once: ``CHURNML_SQL_READ_CONNECTIONS``
    (default 2; 1 reads every table on one connection)."""
    raw = os.environ.get(READ_CONNECTIONS_ENV, "").strip()
    if not raw:
        return DEFAULT_READ_CONNECTIONS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise ConfigError(f"{READ_CONNECTIONS_ENV}={raw!r}: expected a whole number from 1 to 64")
    return value


def read_tables(source: DatabaseSource, config: SqlConfig | None = None,
                connections: int | None = None) -> tuple[ReadSession, Mapping[str, pd.DataFrame]]:
    """``(session, {table: DataFrame})`` for :func:`~churnml.data.validation.validate_frames`;
    the caller closes the session (its connections) after validation. ``connections``: see
    :func:`read_connections` (its default)."""
    config = config or load_sql_config()
    if connections is None:
        connections = read_connections()
    conn = connect(source)
    session = ReadSession(conn, source, connections)
    try:
        present = present_tables(conn, source, config)
        session.begin()
    except BaseException:
        session.close()
        raise
    return session, _SqlAsFrames(session, config, present)
