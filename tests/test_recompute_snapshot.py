"""The recompute reads its data on two connections when it can (loaders.load_columns with
share_snapshot): the second imports the first's snapshot, so the two halves are the same committed
state, and the outcome dict is the one a single connection gives, to the last digit. Inside a test
case's transaction (uncommitted rows a second connection cannot see) it stays on one connection."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from cohort.models import Assessment, UstekinumabDose
from reports.loaders import load_columns
from reports.services import compute_scope, data_snapshot, scope_outcomes, shares_snapshot
from tests.test_outcome_columns import as_json, cohort31, sorted_rows  # noqa: F401 (cohort31: a fixture)


def committed_elsewhere(change) -> None:
    """Run `change` on another connection (a thread has its own) and commit it."""

    def run():
        try:
            change()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("people", "cohort31")
def test_the_worker_reads_on_two_connections_the_same_outcomes(django_assert_num_queries):
    for scope in ("all", "UMCU", "AMC"):
        with data_snapshot():
            assert shares_snapshot()
            one_connection = load_columns(scope)
            # The five COPY queries (three here, two on the second connection) and the export.
            with django_assert_num_queries(6):
                two_connections = load_columns(scope, share_snapshot=True)
            assert sorted_rows(two_connections) == sorted_rows(one_connection)
            assert len(one_connection["sex"]) > 0
            assert as_json(compute_scope(scope)[0]) == as_json(scope_outcomes(scope).result)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("people", "cohort31")
def test_the_second_connection_sees_the_snapshot_not_later_commits():
    with data_snapshot():
        before = compute_scope("all")[0]  # takes the snapshot
        committed_elsewhere(lambda: UstekinumabDose.objects.filter(phase="maintenance").delete())
        committed_elsewhere(lambda: Assessment.objects.filter(visit="week_52").delete())
        # The assessments and the doses are the second connection's queries.
        assert as_json(compute_scope("all")[0]) == as_json(before)
    with data_snapshot():
        after = compute_scope("all")[0]
    assert after["treatment"]["maintenance_doses"]["median"] == 0
    assert after["clinical_remission"]["week_52"]["observed"]["N"] == 0
    assert before["clinical_remission"]["week_52"]["observed"]["N"] > 0


@pytest.mark.django_db
@pytest.mark.usefixtures("people", "cohort31")
def test_inside_a_test_case_transaction_the_recompute_stays_on_one_connection():
    # The test case's rows are not committed: a second connection would not see them.
    with data_snapshot():
        assert not shares_snapshot()
        assert compute_scope("all")[0]["n_patients"] > 0
    assert not shares_snapshot()
