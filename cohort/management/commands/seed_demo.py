"""`manage.py seed_demo`: a synthetic demo cohort and demo accounts (SPEC section 8).

The patients come from cohort.demo (the generator); this command writes them, with made-up
centres and accounts, and prints the logins. Nothing here describes a real person.

Speed matters (100,000 patients for the benchmarks): rows are drawn as plain values and written
with COPY inside one transaction, under the audit context so every audit event names the system
user. Rows are not full_clean()ed one by one; tests/test_seed_demo.py proves that every seeded
record passes the validation layer (cohort.validators.check).
"""

from __future__ import annotations

import datetime as dt
import io
import multiprocessing
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction
from django.utils import timezone

from cohort import signals
from cohort.audit import audit_context
from cohort.choices import FormStatus, Role
from cohort.demo import plan_patient
from cohort.models import (
    AdverseEvent,
    Assessment,
    Centre,
    FollowUp,
    Membership,
    Patient,
    PriorBiologic,
    Reinduction,
    UstekinumabDose,
)
from cohort.services import next_study_id, system_user

# Synthetic centres: Dutch-sounding codes, made-up names.
CENTRES: tuple[tuple[str, str], ...] = (
    ("AMC", "Amstelland Academisch Centrum (demo)"),
    ("UMCU", "Universitair Centrum Vechtstreek (demo)"),
    ("EMC", "Erasmus-Maasoever Centrum (demo)"),
    ("RUMC", "Radboud-Waalkade Centrum (demo)"),
    ("LUMC", "Leidse Rijnoever Kliniek (demo)"),
    ("UMCG", "Noorderhaven Universitair Centrum (demo)"),
    ("MUMC", "Maasheuvel Universitair Centrum (demo)"),
    ("ISALA", "IJsseldelta Ziekenhuis (demo)"),
    ("RST", "Rijnstroom Ziekenhuis (demo)"),
    ("CZE", "Dommeldal Ziekenhuis (demo)"),
    ("ETZ", "Tilburgse Heide Ziekenhuis (demo)"),
    ("ZGT", "Twentse Esch Ziekenhuis (demo)"),
)

BATCH_PATIENTS = 1000
INSERT_BATCH = 2000
DEFAULT_LOGINS_FILE = Path(settings.BASE_DIR) / "var" / "demo_logins.txt"
T = TypeVar("T")


class Command(BaseCommand):
    help = "Make a synthetic demo cohort and demo accounts (passwords printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--patients", type=int, default=120, help="number of patients (default 120)")
        parser.add_argument("--centres", type=int, default=4, help="number of centres (default 4)")
        parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one)")
        parser.add_argument("--if-empty", action="store_true", help="seed only when there are no patients yet")
        parser.add_argument(
            "--logins-file",
            default=str(getattr(settings, "DEMO_LOGINS_FILE", DEFAULT_LOGINS_FILE)),
            help="where the demo logins are kept (mode 600)",
        )

    def handle(self, *args, patients: int, centres: int, seed: int | None, if_empty: bool, **options):
        logins_file = Path(options["logins_file"])
        if patients < 0 or not 1 <= centres <= 99:
            raise CommandError("--patients must be >= 0 and --centres between 1 and 99.")
        if if_empty and Patient.all_objects.exists():
            self.stdout.write("Patients exist already: nothing seeded.")
            self._print_logins(_read_logins(logins_file))
            return

        seed = secrets.randbelow(10**6) if seed is None else seed
        started = time.perf_counter()
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Deferred foreign-key checks pile up in PostgreSQL's trigger queue beside the
                # audit triggers' events and make every later statement slower; checking them at
                # once keeps the cost per row constant (the parent rows are written first).
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            system = system_user()
            with audit_context(user=system, source="seed_demo"):
                centre_rows = _centres(centres)
                new_logins, nurses = _accounts(centre_rows)
                counts = _seed_patients(random.Random(seed), timezone.localdate(), patients, centre_rows, nurses)
            # The triggers have asked for the outcomes to be recomputed; wake a worker on commit.
            signals.outcomes_changed()
        elapsed = time.perf_counter() - started

        logins = _read_logins(logins_file)
        logins.update(new_logins)
        if new_logins:
            _write_logins(logins_file, logins)
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {patients} synthetic patients at {centres} centres (seed {seed}) "
                f"in {elapsed:.1f} s: {summary}."
            )
        )
        self._print_logins(logins, new=set(new_logins))

    def _print_logins(self, logins: dict[str, tuple[str, str]], new: set[str] | None = None) -> None:
        if not logins:
            self.stdout.write("No demo logins recorded.")
            return
        self.stdout.write("Demo logins (synthetic data only; role, username, password):")
        width = max(len(name) for name in logins)
        for username, (role, password) in logins.items():
            mark = "  (new)" if new and username in new else ""
            self.stdout.write(f"  {role:<12} {username:<{width}}  {password}{mark}")


def _centres(count: int) -> list[Centre]:
    wanted = list(CENTRES[:count]) + [
        (f"C{index:02d}", f"Demo centre {index} (demo)") for index in range(len(CENTRES) + 1, count + 1)
    ]
    rows = []
    for code, name in wanted:
        centre, _ = Centre.objects.get_or_create(code=code, defaults={"name": name})
        rows.append(centre)
    # Lock the centres: study IDs are numbered per centre (as in services.patient_enrol).
    return list(Centre.objects.select_for_update().filter(pk__in=[c.pk for c in rows]).order_by("pk"))


def _accounts(centres: list[Centre]) -> tuple[dict[str, tuple[str, str]], dict[int, User]]:
    """The demo accounts; returns the logins of accounts made now and each centre's nurse."""
    new: dict[str, tuple[str, str]] = {}

    def account(username: str, role: str, **flags) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            # An address at a reserved domain: "Forgot your password?" works in the demo, the
            # message printed to the console (no EMAIL_HOST).
            email = f"{username}@example.org"
            user = User.objects.create_user(username=username, email=email, password=password, **flags)
            new[username] = (role, password)
        return user

    admin = account("admin", "admin", is_staff=True, is_superuser=True, first_name="Demo", last_name="Admin")
    coordinator = account("coordinator", "coordinator", is_staff=True, first_name="Demo", last_name="Coordinator")
    wanted = [(admin, centre, Role.ADMIN) for centre in centres]
    wanted += [(coordinator, centre, Role.COORDINATOR) for centre in centres]
    nurses = {}
    for centre in centres:
        nurse = account(f"nurse.{centre.code.lower()}", "nurse", first_name="Demo", last_name=f"Nurse {centre.code}")
        nurses[centre.pk] = nurse
        wanted.append((nurse, centre, Role.NURSE))
        # The centre's principal investigator, who signs its casebooks (SPEC section 10).
        code = centre.code.lower()
        investigator = account(f"investigator.{code}", "investigator", first_name="Demo", last_name=f"PI {centre.code}")
        wanted.append((investigator, centre, Role.INVESTIGATOR))
    existing = set(Membership.objects.filter(centre__in=centres).values_list("user_id", "centre_id"))
    Membership.objects.bulk_create(
        Membership(user=user, centre=centre, role=role)
        for user, centre, role in wanted
        if (user.pk, centre.pk) not in existing
    )
    return new, nurses


def _seed_patients(
    rng: random.Random, today: dt.date, count: int, centres: list[Centre], nurses: dict[int, User]
) -> dict[str, int]:
    """Plans are drawn and written out as COPY text in a second process while this one sends the
    previous batch to the database: drawing and encoding are Python work, writing is the
    database's (the triggers), so on two cores the two overlap, and in a process of its own the
    drawing does not share this one's interpreter lock. The draws stay in that one process, in
    the same order: a seed gives the same cohort. The patients' ids are taken from their sequence
    here first, so the second process can write the forms' rows without asking the database."""
    now = timezone.now()
    # Read here, in this thread's transaction (the centres may be new in it).
    next_number = {centre.pk: int(next_study_id(centre).rsplit("-", 1)[1]) for centre in centres}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Patient._meta.db_table, count],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    batches = _encoded_batches(rng, today, count, centres, nurses, next_number, ids, now)
    counts = {name: 0 for name, _ in TABLES}
    with connection.cursor() as cursor:
        for batch in _in_subprocess(batches):
            cursor.execute("SELECT 1")  # sets the audit context for the COPY below (see _copy_columns)
            for (name, model), (rows, chunks) in zip(TABLES, batch, strict=True):
                copy = _copy_statement(model)
                for chunk in chunks:
                    cursor.copy_expert(copy, io.BytesIO(chunk))
                counts[name] += rows
    return counts


def _encoded_batches(
    rng: random.Random,
    today: dt.date,
    count: int,
    centres: list[Centre],
    nurses: dict[int, User],
    next_number: dict[int, int],
    ids: list[int],
    now: dt.datetime,
) -> Iterator[list[tuple[int, list[bytes]]]]:
    """BATCH_PATIENTS patients at a time with their forms' rows, as COPY text for each of TABLES:
    (rows, chunks of at most INSERT_BATCH rows). No database access (it runs in a process of its
    own, which has no part in the seeding transaction)."""
    constants = {"form_status": FormStatus.COMPLETE, "created_at": now, "updated_at": now}
    encoders = [_copy_encoder(model, constants) for _, model in TABLES]
    # Centres differ in size, as in real cohorts.
    weights = [1 / (1 + 0.35 * index) for index in range(len(centres))]
    # A few patients are left without a follow-up form ('excluded_incomplete' in the outcomes).
    incomplete = set(rng.sample(range(count), max(1 if count >= 20 else 0, round(0.03 * count))))
    for batch_start in range(0, count, BATCH_PATIENTS):
        rows: list[list[dict[str, Any]]] = [[] for _ in TABLES]
        for index in range(batch_start, min(count, batch_start + BATCH_PATIENTS)):
            centre = rng.choices(centres, weights=weights)[0]
            plan = plan_patient(rng, today, with_follow_up=index not in incomplete)
            number = next_number[centre.pk]
            next_number[centre.pk] += 1
            patient_id = ids[index]
            rows[0].append(
                {
                    "id": patient_id,
                    "study_id": f"{centre.code}-{number:03d}",
                    "centre_id": centre.pk,
                    "created_by_id": nurses[centre.pk].pk,
                    **plan.patient,
                }
            )
            for (name, _), form_rows in zip(TABLES[1:], rows[1:], strict=True):
                values = getattr(plan, name)
                for row in [values] if isinstance(values, dict) else values or ():
                    form_rows.append(row | {"patient_id": patient_id})
        yield [(len(table_rows), encode(table_rows)) for table_rows, encode in zip(rows, encoders, strict=True)]


def _in_subprocess(items: Iterator[T]) -> Iterator[T]:
    """The items of a generator made in a forked process, at most two ahead of the consumer.
    An exception there is raised here; the process is ended when the consumer stops.

    Forked, so the generator and what it holds need not be pickled (its items are). The child
    never touches the parent's database connection, and leaves by os._exit (multiprocessing's
    fork start), so it closes nothing of the parent's."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=2)
    done = "done"

    def produce() -> None:
        try:
            for item in items:
                queue.put((None, item))
            queue.put((None, done))
        except BaseException as error:  # handed to the consumer, which raises it
            queue.put((error, done))

    process = context.Process(target=produce, name="seed-demo-plans", daemon=True)
    process.start()
    try:
        while True:
            try:
                error, item = queue.get(timeout=1)
            except Empty:
                if not process.is_alive():
                    stopped = f"The process drawing the plans stopped (exit code {process.exitcode})."
                    raise CommandError(stopped) from None
                continue
            if error is not None:
                raise error
            if isinstance(item, str) and item == done:
                return
            yield item
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        queue.close()


# The tables written, patients first (the forms' rows refer to them); each form's name is its
# attribute of cohort.demo.PatientPlan.
TABLES = (
    ("patients", Patient),
    ("prior_biologics", PriorBiologic),
    ("doses", UstekinumabDose),
    ("reinduction", Reinduction),
    ("assessments", Assessment),
    ("follow_up", FollowUp),
    ("adverse_events", AdverseEvent),
)


def _copy_fields(model: type[models.Model]) -> list[models.Field]:
    # The patients' ids come from their sequence (_seed_patients); the forms' from the database.
    return [f for f in model._meta.concrete_fields if model is Patient or not f.primary_key]


def _copy_statement(model: type[models.Model]) -> str:
    """Plain values written with COPY, INSERT_BATCH rows a statement: cheaper for both sides than
    bulk_create (its per-value preparation cost more than the database's work) or multi-row
    INSERTs. COPY fires the audit triggers like an INSERT; pghistory attaches its context (who,
    source) by prefixing Django's statements, and COPY is not one of them, so a statement through
    Django's cursor comes first: the context it sets lasts to the end of the transaction."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in _copy_fields(model))
    return f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"


def _copy_encoder(model: type[models.Model], constants: dict[str, Any]) -> Callable[[list[dict]], list[bytes]]:
    """A function from rows (dicts by attname) to COPY text, INSERT_BATCH rows a chunk; each
    column's text conversion chosen once, its default's text made once."""
    fields = _copy_fields(model)
    defaults = {f.attname: None if f.primary_key else f.get_default() for f in fields} | constants
    names = [f.attname for f in fields]
    columns = [(f.attname, _copy_text(f), _copy_text(f)(defaults[f.attname])) for f in fields]

    def encode(rows: list[dict[str, Any]]) -> list[bytes]:
        unknown = set(rows[0]) - set(names) if rows else set()
        if unknown:
            raise CommandError(f"{model.__name__} has no field {', '.join(sorted(unknown))}.")
        return [
            "".join(
                [
                    "\t".join([as_text(row[name]) if name in row else default for name, as_text, default in columns])
                    + "\n"
                    for row in rows[start : start + INSERT_BATCH]
                ]
            ).encode()
            for start in range(0, len(rows), INSERT_BATCH)
        ]

    return encode


# COPY's text format: backslash escapes for these characters, \N for NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(field: models.Field) -> Callable[[object], str]:
    """How COPY's text format reads a value of this field: dates ISO, booleans t/f, text escaped,
    numbers as written, NULL as \\N. Chosen once per column, not per value."""
    if isinstance(field, models.BooleanField):
        return lambda value: "\\N" if value is None else ("t" if value else "f")
    if isinstance(field, models.DateField):  # DateTimeField too
        return lambda value: "\\N" if value is None else value.isoformat()
    if isinstance(field, models.CharField | models.TextField):
        return lambda value: "\\N" if value is None else value.translate(_COPY_ESCAPES)
    return lambda value: "\\N" if value is None else str(value)


def _read_logins(path: Path) -> dict[str, tuple[str, str]]:
    """username -> (role, password), from lines 'role username password'."""
    logins: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return logins
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            role, username, password = parts
            logins[username] = (role, password)
    return logins


def _write_logins(path: Path, logins: dict[str, tuple[str, str]]) -> None:
    """Readable by the owner only; written to a temporary name and moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Demo logins made by `manage.py seed_demo` (synthetic data only): role username password\n")
        for username, (role, password) in logins.items():
            fh.write(f"{role} {username} {password}\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
