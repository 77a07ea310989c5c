"""BigQuery behaviour the emulator does not show, played by wrapping the real client's HTTP session.

bqemulator runs every statement one after another, on DuckDB. Each wrapper here forwards
everything to the real emulator except what it plays, and names the documented rule it plays:

- :class:`FlakySession`: 503s and an aborted commit, as BigQuery answers under load;
- :class:`ConcurrentStatements`: two statements running at once, by the rules of
  https://cloud.google.com/bigquery/docs/data-manipulation-language#dml_statement_conflicts
  ("An INSERT DML statement … doesn't conflict with any other concurrently running DML statement.
  A MERGE DML statement does not conflict … as long as the statement only inserts rows";
  mutating statements that change the same partition at once conflict, and the one that loses
  fails: "Could not serialize access to table … due to concurrent update");
- :class:`LostReply`: a statement that committed, reported to the client as failed with a
  transient error, which the client's job retry runs again as a new job
  (https://cloud.google.com/python/docs/reference/bigquery/latest/google.cloud.bigquery.client.Client#google_cloud_bigquery_client_Client_query,
  ``job_retry``);
- :class:`PartitionFilterRequired`: a table that requires a partition filter refuses a statement
  whose filter on the partition column is not a constant expression
  (https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries);
- :class:`JobRecorder`: no rule, it records every job's configuration (labels, caps).
"""

from __future__ import annotations

import json
import re
import threading
import uuid

import requests


def fake_response(method: str, url: str, status: int, reason: str, message: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["content-type"] = "application/json"
    response._content = json.dumps({"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}).encode()
    response.request = requests.Request(method, url).prepare()
    response.url = url
    return response


def failed_job(method: str, url: str, body: dict, reason: str, message: str) -> requests.Response:
    """BigQuery's answer to ``jobs.insert`` for a job that ran and failed: 200, the job DONE
    with its ``errorResult`` (the client raises from it, and its job retry decides)."""
    reference = {**body.get("jobReference", {}), "location": "US"}
    reference.setdefault("jobId", uuid.uuid4().hex)
    error = {"reason": reason, "message": message}
    job = {
        "kind": "bigquery#job",
        "id": f"{reference.get('projectId', 'local')}:{reference['jobId']}",
        "jobReference": reference,
        "configuration": body.get("configuration", {}),
        "status": {"state": "DONE", "errorResult": error, "errors": [error]},
    }
    response = requests.Response()
    response.status_code = 200
    response.headers["content-type"] = "application/json"
    response._content = json.dumps(job).encode()
    response.request = requests.Request(method, url).prepare()
    response.url = url
    return response


def job_body(method: str, url: str, data) -> dict | None:
    """The body of a query request, or None for any other request: ``jobs.insert`` (how this
    version sends every statement) or ``jobs.query`` (``query_and_wait``, as older versions did;
    kept so that the tests show what older versions did wrong)."""
    path = url.split("?")[0]
    if method != "POST" or not (path.endswith("/jobs") or path.endswith("/queries")):
        return None
    try:
        body = json.loads(data if isinstance(data, (str, bytes)) else b"{}")
    except ValueError:
        return None
    if path.endswith("/queries"):
        return body if "query" in body else None
    return body if "query" in body.get("configuration", {}) else None


def query_text(body: dict) -> str:
    return body["query"] if isinstance(body.get("query"), str) else body["configuration"]["query"]["query"]


def with_query(body: dict, sql: str) -> str:
    if isinstance(body.get("query"), str):
        body["query"] = sql
    else:
        body["configuration"]["query"]["query"] = sql
    return json.dumps(body)


def failed(method: str, url: str, body: dict, reason: str, message: str) -> requests.Response:
    """A query that ran and failed, as its endpoint reports it: the job's ``errorResult`` for
    ``jobs.insert``, an HTTP error for ``jobs.query``."""
    if isinstance(body.get("query"), str):
        status = 500 if reason == "backendError" else 400
        return fake_response(method, url, status, reason, message)
    return failed_job(method, url, body, reason, message)


class Wrapper:
    """Forwards everything to the real session unless a subclass plays something."""

    def __init__(self, session):
        self.session = session

    def __getattr__(self, name):
        return getattr(self.session, name)

    def request(self, method, url, data=None, headers=None, **kwargs):
        return self.session.request(method, url, data=data, headers=headers, **kwargs)

    def forward(self, method, url, data=None, headers=None, **kwargs):
        return self.session.request(method, url, data=data, headers=headers, **kwargs)


def wrap(warehouse, wrapper_class, **options):
    """Put ``wrapper_class`` around ``warehouse``'s client session; returns the wrapper."""
    wrapper = wrapper_class(warehouse.client._http, **options)
    warehouse.client._http_internal = wrapper
    return wrapper


class FlakySession(Wrapper):
    """The first request of each kind (dataset, upload, query job) answered with a 503, and the
    first commit of a transaction aborted as BigQuery aborts one that lost a concurrent update
    (or with a permanent error), as BigQuery does under load."""

    def __init__(self, session, *, unavailable: bool = False, commit_error: str | None = None, commit_errors: int = 1, transient: bool = True):
        super().__init__(session)
        self.unavailable = {"datasets", "upload", "queries"} if unavailable else set()
        self.commit_error = commit_error
        self.commit_reason = "invalidQuery"
        self.commit_errors = commit_errors
        self.injected: list[str] = []
        self.commits = 0

    def request(self, method, url, data=None, headers=None, **kwargs):
        path = url.split("?")[0]
        body = job_body(method, url, data)
        kind = "upload" if "/upload/" in path else "queries" if body is not None else "datasets" if "/datasets" in path else "other"
        if kind in self.unavailable:
            self.unavailable.discard(kind)
            self.injected.append(f"503 {kind}")
            return fake_response(method, url, 503, "backendError", "The service is currently unavailable (injected).")
        if body is not None and "COMMIT TRANSACTION" in query_text(body):
            self.commits += 1
            if self.commit_error and self.commit_errors:
                self.commit_errors -= 1
                self.injected.append("commit")
                return failed(method, url, body, self.commit_reason, self.commit_error)
        return self.forward(method, url, data=data, headers=headers, **kwargs)


INSERT_ONLY_MERGE = re.compile(
    r"MERGE\s+(?P<table>`[^`]+`).*?WHEN NOT MATCHED THEN\s+INSERT\s*\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>.*)\)\s*$", re.S
)


class Race:
    """Two statements (of two runs: two clients) that run at once: the first two query jobs
    whose text ``matches``, whichever client sends them. Each is held until the other has been
    sent too, then both get the outcome BigQuery documents for concurrent DML on one table
    (module docstring):

    - two MERGEs that only insert rows (none of the table's rows matched, as read before either
      ran) both commit: the second inserts its row too (played as the plain ``INSERT`` of its
      ``WHEN NOT MATCHED`` clause);
    - two mutating statements (UPDATE, DELETE, a MERGE that changes existing rows, a
      transaction): the first commits, the second fails with BigQuery's concurrent-update error
      (the client's job retry then runs it again, after the first committed).

    Played for the case the tests make: both statements read the same starting table, and a
    MERGE matches rows only if that table has any."""

    def __init__(self, matches: str, timeout: float = 120):
        self.pattern = re.compile(matches, re.S)
        self.arrived = threading.Barrier(2, timeout=timeout)
        self.first_done = threading.Event()
        self.taken = 0
        self.rows_before: int | None = None
        self.outcomes: list[str] = []
        self._lock = threading.Lock()

    def join(self, warehouse) -> "ConcurrentStatements":
        """Route ``warehouse``'s client through this race."""
        return wrap(warehouse, ConcurrentStatements, race=self)


class ConcurrentStatements(Wrapper):
    """One client's side of a :class:`Race`."""

    def __init__(self, session, *, race: Race):
        super().__init__(session)
        self.race = race

    def _count(self, url: str, table: str) -> int:
        """Rows of ``table`` now, read through the real session (``jobs.query``)."""
        projects = url.split("?")[0].rsplit("/", 1)[0]  # .../projects/<project>
        answer = self.session.request("POST", f"{projects}/queries", data=json.dumps({"query": f"SELECT COUNT(*) FROM `{table}`",
                                                                                     "useLegacySql": False}),
                                      headers={"Content-Type": "application/json"})  # fmt: skip
        return int(answer.json()["rows"][0]["f"][0]["v"])

    def request(self, method, url, data=None, headers=None, **kwargs):
        race = self.race
        body = job_body(method, url, data)
        if body is None or not race.pattern.search(query_text(body)):
            return self.forward(method, url, data=data, headers=headers, **kwargs)
        with race._lock:
            place = race.taken
            race.taken += 1
        if place > 1:  # after the race: as usual
            return self.forward(method, url, data=data, headers=headers, **kwargs)
        race.arrived.wait()  # both are running now
        if place == 0:
            table = re.search(r"(?:MERGE|UPDATE|DELETE FROM|INTO)\s+`([^`]+)`", query_text(body))
            race.rows_before = self._count(url, table[1]) if table else None  # the snapshot both read
            try:
                return self.forward(method, url, data=data, headers=headers, **kwargs)
            finally:
                race.outcomes.append("first committed")
                race.first_done.set()
        race.first_done.wait(timeout=120)
        sql = query_text(body).strip()
        merge = INSERT_ONLY_MERGE.search(sql)
        if merge and ("WHEN MATCHED" not in sql or race.rows_before == 0):
            # Read before the first one committed: no row matched, so it inserts too.
            race.outcomes.append("second inserted too (insert-only MERGE: no conflict)")
            insert = f"INSERT INTO {merge['table']} ({merge['columns']}) VALUES ({merge['values']})"
            return self.forward(method, url, data=with_query(body, insert), headers=headers, **kwargs)
        if merge or re.match(r"(UPDATE|DELETE|MERGE)\b", sql, re.I) or "BEGIN TRANSACTION" in sql:
            race.outcomes.append("second aborted (concurrent update)")
            table = re.search(r"`([^`]+)`", sql)
            message = f"Could not serialize access to table {table[1] if table else '?'} due to concurrent update"
            return failed(method, url, body, "invalidQuery", message)
        return self.forward(method, url, data=data, headers=headers, **kwargs)


class LostReply(Wrapper):
    """The first query job whose text ``matches`` runs (and commits) on the server, and the
    client is told it failed with a transient backend error, as when the answer is lost: the
    client's retry runs the statement again, as a new job."""

    def __init__(self, session, *, matches: str):
        super().__init__(session)
        self.pattern = re.compile(matches, re.S)
        self.lost = 0
        self.sent = 0

    def request(self, method, url, data=None, headers=None, **kwargs):
        body = job_body(method, url, data)
        if body is None or not self.pattern.search(query_text(body)):
            return self.forward(method, url, data=data, headers=headers, **kwargs)
        self.sent += 1
        response = self.forward(method, url, data=data, headers=headers, **kwargs)
        if self.lost:
            return response
        self.lost += 1
        return failed(method, url, body, "backendError", "Backend error: the answer was lost (injected)")


CONSTANT_DATES = r"`{column}` (?:IN \((?:DATE '\d{{4}}-\d{{2}}-\d{{2}}'(?:, )?)+\)|= DATE '\d{{4}}-\d{{2}}-\d{{2}}')"


class PartitionFilterRequired(Wrapper):
    """``tables`` require a partition filter on ``column``: a statement that deletes from one of
    them without a constant filter on it is refused, with BigQuery's message."""

    def __init__(self, session, *, tables: list[str], column: str = "game_date"):
        super().__init__(session)
        self.tables = tables
        self.column = column
        self.constant = re.compile(CONSTANT_DATES.format(column=column))
        self.refused: list[str] = []

    def request(self, method, url, data=None, headers=None, **kwargs):
        body = job_body(method, url, data)
        if body is not None:
            for statement in query_text(body).split(";\n"):
                target = re.match(r"\s*DELETE FROM `([^`]+)` WHERE (.*)", statement, re.S)
                if target and target[1] in self.tables and not self.constant.search(target[2]):
                    self.refused.append(statement.strip())
                    message = (
                        f"Cannot query over table '{target[1]}' without a filter over column(s) '{self.column}' "
                        "that can be used for partition elimination"
                    )
                    return failed(method, url, body, "invalidQuery", message)
        return self.forward(method, url, data=data, headers=headers, **kwargs)


class JobRecorder(Wrapper):
    """Every job as sent, query and load jobs alike: ``{"kind", "labels", "maximum_bytes_billed",
    "job_timeout_ms", "sql"}``."""

    def __init__(self, session):
        super().__init__(session)
        self.jobs: list[dict] = []

    def request(self, method, url, data=None, headers=None, **kwargs):
        body = job_body(method, url, data)
        if body is not None and isinstance(body.get("query"), str):  # jobs.query
            self.jobs.append({"kind": "query", "labels": body.get("labels") or {}, "maximum_bytes_billed": body.get("maximumBytesBilled"),
                              "job_timeout_ms": body.get("timeoutMs"), "sql": body["query"]})  # fmt: skip
        elif body is not None:
            self._record("query", body)
        elif method == "POST" and "/upload/" in url and isinstance(data, bytes):
            # A resumable upload starts with the load job; a multipart one has it as its first part.
            part = data if data.lstrip().startswith(b"{") else data.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
            try:
                self._record("load", json.loads(part))
            except ValueError:
                self.jobs.append({"kind": "load", "labels": {}, "unreadable": True})
        return self.forward(method, url, data=data, headers=headers, **kwargs)

    def _record(self, kind: str, body: dict) -> None:
        configuration = body.get("configuration", {})
        query = configuration.get("query", {})
        self.jobs.append({
            "kind": kind,
            "labels": configuration.get("labels") or {},
            "maximum_bytes_billed": query.get("maximumBytesBilled"),
            "job_timeout_ms": configuration.get("jobTimeoutMs"),
            "sql": query.get("query", ""),
        })  # fmt: skip
