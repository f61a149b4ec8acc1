"""docker-compose.yml and .env.example stay in step with the code they start and configure.

No Docker engine is needed: the compose file is parsed, and every program it runs is looked up in
the project (modules, the Celery app, management commands).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

BASE_DIR = Path(__file__).resolve().parent.parent
SERVICES = {"postgres", "redis", "migrate", "web", "worker", "beat"}
APP_SERVICES = {"web", "worker", "beat"}
ONE_SHOT = {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def command_steps(command: str | list[str]) -> list[list[str]]:
    """The programs a service's command runs: `sh -c "a && b && exec c"` gives [a, b, c]."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        steps = [shlex.split(part) for part in re.split(r"&&|;", argv[2])]
        return [step[1:] if step[0] == "exec" else step for step in steps if step]
    return [argv]


def settings_env_reads() -> set[str]:
    """Variable names cohort/settings.py reads: os.environ.get/[...], os.getenv, env_*() helpers."""
    tree = ast.parse((BASE_DIR / "cohort" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in {"os.environ.get", "os.getenv"} or func.startswith("env_"):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


def env_example_names() -> set[str]:
    """`NAME=value` lines, and optional `# NAME=default` lines."""
    text = (BASE_DIR / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def compose_interpolated_names() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (BASE_DIR / "docker-compose.yml").read_text()))


def test_it_defines_the_services_with_healthchecks(compose):
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_it_starts_the_app_services_after_the_migrations(compose):
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == ".env", name
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    migrate = compose["services"]["migrate"]
    assert migrate["env_file"] == ".env" and migrate["restart"] == "no"
    assert command_steps(migrate["command"]) == [["python", "manage.py", "migrate", "--noinput"]]


def test_only_the_migrations_get_the_owners_credentials(compose):
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["DATABASE_OWNER_URL"] == "" and environment["POSTGRES_PASSWORD"] == "", name
    assert "DATABASE_OWNER_URL" not in compose["services"]["migrate"]["environment"]


def test_the_web_health_check_asks_the_app(compose):
    test = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in test


def test_it_runs_programs_that_exist_in_the_project(compose):
    commands = get_commands()
    seen = set()
    for name in APP_SERVICES | ONE_SHOT:
        for step in command_steps(compose["services"][name]["command"]):
            program = step[0]
            seen.add(program)
            if program == "python":
                assert step[1] == "manage.py", (name, step)
                assert step[2] in commands, f"{name}: no management command {step[2]!r}"
            elif program == "gunicorn":
                module, _, attribute = step[1].partition(":")
                path = BASE_DIR / (module.replace(".", "/") + ".py")
                assert path.is_file(), f"{name}: {path} missing"
                assert f"{attribute} =" in path.read_text(), f"{name}: {step[1]} not defined"
            elif program == "celery":
                app = step[step.index("-A") + 1]
                assert (BASE_DIR / app / "celery.py").is_file(), f"{name}: no Celery app in {app}/"
                assert step[step.index("-A") + 2] in {"worker", "beat"}, (name, step)
            else:
                pytest.fail(f"{name}: unexpected program {program!r}")
    assert {"python", "gunicorn", "celery"} <= seen


def test_the_image_holds_the_static_files_and_web_only_serves(compose):
    # Collected at build time, so the worker and beat containers have them too (SPEC section 6).
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^RUN .*\\\n\s*python manage.py collectstatic --noinput$", dockerfile, flags=re.MULTILINE)
    steps = command_steps(compose["services"]["web"]["command"])
    assert len(steps) == 1 and steps[0][:2] == ["gunicorn", "cohort.wsgi:application"]
    assert "0.0.0.0:8000" in steps[0]


def test_it_documents_every_setting_in_env_example():
    missing = settings_env_reads() - env_example_names()
    assert not missing, f"read in cohort/settings.py but not in .env.example: {sorted(missing)}"


def test_it_lists_only_variables_something_reads():
    # The postgres container's own variables reach it through compose interpolation.
    unread = env_example_names() - settings_env_reads() - compose_interpolated_names()
    assert not unread, f"in .env.example but read by nothing: {sorted(unread)}"
