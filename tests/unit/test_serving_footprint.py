"""The serving entry point stays lean: admin-only libraries are not loaded in workers.

`cryptography` (6 MiB resident) is loaded only to replay a successor sealed by an
earlier release (tests/http/test_replay_seed.py shows a refresh never needs it).
"""

import json
import subprocess
import sys

from tests.conftest import TEST_SECRET_KEY

PROBE = """
import json, sys
from authserver.wsgi import app
print(json.dumps({
    "modules": sorted(m for m in ("alembic", "flask_migrate", "requests", "mako", "cryptography")
                      if m in sys.modules),
    "commands": sorted(app.cli.commands),
}))
"""


def test_wsgi_app_loads_no_cli_or_migration_libraries(tmp_path):
    env = {
        "AUTHSERVER_DATABASE_URL": "sqlite:///" + str(tmp_path / "probe.db"),
        "AUTHSERVER_SECRET_KEY": TEST_SECRET_KEY,
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["modules"] == []
    assert probe["commands"] == []


def test_cli_app_still_has_admin_and_migration_commands(app):
    assert {"db", "users", "clients", "tokens", "serve"} <= set(app.cli.commands)
