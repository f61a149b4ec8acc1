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
SERVICES = {"postgres", "redis", "web", "worker", "beat"}
APP_SERVICES = {"web", "worker", "beat"}


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


def test_it_defines_the_five_services_with_healthchecks(compose):
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_it_gives_app_services_the_env_file_and_healthy_dependencies(compose):
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == ".env", name
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name


def test_it_runs_programs_that_exist_in_the_project(compose):
    commands = get_commands()
    seen = set()
    for name in APP_SERVICES:
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


def test_it_migrates_and_collects_static_before_serving(compose):
    steps = command_steps(compose["services"]["web"]["command"])
    assert [step[:3] for step in steps[:2]] == [
        ["python", "manage.py", "migrate"],
        ["python", "manage.py", "collectstatic"],
    ]
    assert steps[-1][:2] == ["gunicorn", "cohort.wsgi:application"]
    assert "0.0.0.0:8000" in steps[-1]


def test_it_documents_every_setting_in_env_example():
    missing = settings_env_reads() - env_example_names()
    assert not missing, f"read in cohort/settings.py but not in .env.example: {sorted(missing)}"


def test_it_lists_only_variables_something_reads():
    # The postgres container's own variables reach it through compose interpolation.
    unread = env_example_names() - settings_env_reads() - compose_interpolated_names()
    assert not unread, f"in .env.example but read by nothing: {sorted(unread)}"
