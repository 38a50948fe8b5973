"""The wheel carries templates, migrations and static files, and works installed."""

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY

REPO = Path(__file__).resolve().parent.parent
REQUIRED = [
    "authserver/__init__.py",
    "authserver/templates/base.html",
    "authserver/templates/auth/login.html",
    "authserver/migrations/env.py",
    "authserver/migrations/script.py.mako",
    "authserver/migrations/versions/0001_initial_schema.py",
    "authserver/static/style.css",
    "authserver/openapi.json",
    "authserver/static/favicon.ico",
    "authserver/data/common-passwords.txt.gz",
    # Compiled by hatch_build.py: a wheel needs no build step to speak every language.
    "authserver/translations/es/LC_MESSAGES/messages.mo",
    "authserver/translations/de/LC_MESSAGES/messages.mo",
    "authserver/translations/fr/LC_MESSAGES/messages.mo",
    "authserver/translations/ja/LC_MESSAGES/messages.mo",
]

# Run inside the fresh venv: where does everything come from, and does it work?
PROBE = """
import json, sys
import authserver
from authserver import create_app, resource_dir
from authserver.database import db
from flask_migrate import upgrade
app = create_app({"DATABASE_URL": sys.argv[1], "SECRET_KEY": sys.argv[2],
                  "LOG_FORMAT": "text"})
with app.app_context():
    upgrade()
    tables = sorted(db.inspect(db.engine).get_table_names())
    db.engine.dispose()
http = app.test_client()
login = http.get("/login")
spanish = http.get("/login", headers={"Accept-Language": "es-MX,es;q=0.9"})
japanese = http.get("/login", headers={"Accept-Language": "ja"})
css = http.get("/static/style.css")
print(json.dumps({
    "package": authserver.__file__,
    "templates": resource_dir("templates"),
    "migrations": resource_dir("migrations"),
    "static": resource_dir("static"),
    "template_folder": app.jinja_loader.loaders[1].searchpath,
    "translations": resource_dir("translations"),
    "spanish": "Iniciar sesión" in spanish.get_data(as_text=True),
    "japanese": "ログイン" in japanese.get_data(as_text=True),
    "tables": tables,
    "login": [login.status_code, "csrf_token" in login.get_data(as_text=True)],
    "css": [css.status_code, len(css.get_data())],
}))
"""


def run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: hatchling comes from the test extra, so no download is needed.
    run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ]
    )
    (built,) = out.glob("authserver-*.whl")
    return built


def test_wheel_contains_templates_migrations_and_static(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED if name not in names]
    assert missing == []


def test_wheel_contains_every_template_and_migration_of_the_repository(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "migrations", "static"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(REPO).as_posix()
                assert f"authserver/{relative}" in names, relative


def test_wheel_has_console_script_and_no_stray_files(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "authserver = authserver.cli:main" in archive.read(entry_points).decode()
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert not [n for n in names if n.startswith(("tests/", "authserver/tests/"))]
    assert not [n for n in names if n.endswith((".db", "secret_key"))]


def test_installed_wheel_runs_from_its_own_files(wheel, tmp_path):
    venv = tmp_path / "venv"
    # A venv of its own (no system site-packages), the wheel installed without deps.
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    site_packages = Path(
        run(
            [
                str(python),
                "-c",
                "import sysconfig;print(sysconfig.get_paths()['purelib'])",
            ]
        ).stdout.strip()
    )
    # Dependencies (Flask, SQLAlchemy, ...) come from the test environment, appended
    # after the venv's own site-packages so its authserver is the one imported.
    outer = sysconfig.get_paths()["purelib"]
    (site_packages / "zz_dependencies.pth").write_text(f"import site; site.addsitedir({outer!r})\n")

    database_url = "sqlite:///" + str(tmp_path / "installed.db")
    env = {
        "PATH": "/usr/bin:/bin",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    done = run(
        [str(python), "-I", "-c", PROBE, database_url, TEST_SECRET_KEY],
        cwd=tmp_path,
        env=env,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    package_dir = site_packages / "authserver"
    assert Path(report["package"]) == package_dir / "__init__.py"
    assert report["templates"] == str(package_dir / "templates")
    assert report["migrations"] == str(package_dir / "migrations")
    assert report["static"] == str(package_dir / "static")
    assert report["template_folder"] == [str(package_dir / "templates")]
    assert report["translations"] == str(package_dir / "translations")
    assert report["spanish"] is True
    assert report["japanese"] is True
    assert "users" in report["tables"]
    assert "alembic_version" in report["tables"]
    assert report["login"] == [200, True]
    assert report["css"][0] == 200
    assert report["css"][1] > 0

    # The console script installed with the wheel works too.
    cli_env = {
        **env,
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_SECRET_KEY": TEST_SECRET_KEY,
    }
    created = run(
        [
            str(venv / "bin" / "authserver"),
            "users",
            "create",
            "pkg",
            "--name",
            "Packaged",
            "--password-stdin",
            "--json",
        ],
        input="a packaged password\n",
        cwd=tmp_path,
        env=cli_env,
    )
    assert json.loads(created.stdout)["username"] == "pkg"
