"""Statements PostgreSQL plans once per database connection (PREPARE / EXECUTE): the ones composed
once per process (access.CompiledRows and CompiledValues: the user, the patient or form row, its
locks, queries and signatures, a list page's columns) and the record reads (services). Each reads by
a key (a user, a study ID, a patient id, a page's patient ids), so its plan is the same whatever the
key, and planning it cost more than running it (the form row's read: 0.48 ms to plan, 0.08 ms to
run; issue 14).

`execute(cursor, sql, params)` is `cursor.execute(sql, params)`. The first time a connection
meets `sql`, the same round trip prepares it (`PREPARE name AS ...; EXECUTE name(...)`); after that
only `EXECUTE name(...)` is sent. PostgreSQL plans the first five executions with their values and
then keeps one generic plan when it costs no more (as it does for a key's index lookup).

Prepared statements belong to the server's session, not to a transaction: one prepared in a
transaction that rolls back stays. They are known per connection (a new connection, after
CONN_MAX_AGE or an error, prepares again). If the round trip that prepares fails, whether the
statement was prepared is unknown: that connection runs `sql` unprepared from then on.
Django's cursor runs every statement, so the execute wrappers (pghistory's context, the counting
of statements in tests and benchmarks) see them as before.
"""

from __future__ import annotations

import functools
import hashlib

# A connection's state per statement name: True prepared, False unknown (run it unprepared).
_STATE = "_ecrf_prepared"
_OWNER = "_ecrf_prepared_connection"


@functools.cache
def _forms(sql: str) -> tuple[str, str, str]:
    """The statement's name, its PREPARE, and its EXECUTE with one %s per parameter."""
    count = sql.replace("%%", "").count("%s")
    if not count:  # parameters are what tells a statement's %% from a literal %; all of ours have some
        raise ValueError(f"a prepared statement without parameters: {sql[:80]}")
    name = "ecrf_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    body = sql % tuple(f"${index}" for index in range(1, count + 1))
    return name, f"PREPARE {name} AS {body}".replace("%", "%%"), f"EXECUTE {name}({', '.join(['%s'] * count)})"


def execute(cursor, statements: str | tuple[str, ...], params) -> None:
    """cursor.execute(sql, params) (a Django cursor, positional %s parameters), each statement
    planned once per connection. Several statements (a tuple) go in one round trip, `params` being
    theirs in order; the cursor holds the last one's rows, as with "first; second"."""
    wrapper = cursor.db
    raw = wrapper.connection
    if getattr(wrapper, _OWNER, None) is not raw:  # a new connection knows no statement
        setattr(wrapper, _OWNER, raw)
        setattr(wrapper, _STATE, {})
    known: dict[str, bool] = getattr(wrapper, _STATE)
    statements = (statements,) if isinstance(statements, str) else statements
    forms = [_forms(sql) for sql in statements]
    if any(known.get(name) is False for name, *_ in forms):
        cursor.execute("; ".join(statements), params)
        return
    new = list(dict.fromkeys(name for name, *_ in forms if name not in known))
    prepares = {name: prepare for name, prepare, _run in forms if name in new}
    sent = [*prepares.values(), *(run for _name, _prepare, run in forms)]
    for name in new:
        known[name] = False  # until the round trip succeeds
    cursor.execute("; ".join(sent), params)
    for name in new:
        known[name] = True
