"""CI's fixed sample of 30 mutants of the token rules: every one must be killed.

Each mutant is a pattern, not a line number: an exact piece of source (it must occur
exactly once, so a refactoring that moves code keeps the sample valid) and what it
becomes. The pieces are the rules issue 19 found unguarded: commits, WHERE clauses,
boundaries. Each mutant runs only the test files that should kill it, in a copy of
the tree, so the check takes minutes. A pattern that no longer matches fails the run:
update the sample with the code (docs/testing.md), never drop a mutant silently.

    python -m tests.mutation.sample            # all 30 (SQLite, or AUTHSERVER_TEST_DATABASE_URL)
    python -m tests.mutation.sample -k commit  # those whose name contains "commit"
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.pytest_command import pytest_command

ROOT = Path(__file__).resolve().parents[2]
# The modules the mutants change (each pattern occurs once in its own module).
CODES = "authserver/services/codes.py"
ROTATION = "authserver/services/refresh.py"
REVOCATION = "authserver/services/revocation.py"
ISSUANCE = "authserver/services/tokens.py"
PURGING = "authserver/services/purge.py"
# Token usability is a SQL expression on the models (AccessToken.usable).
MODELS = "authserver/models/oauth2.py"
TIMEOUT_SECONDS = 600

REFRESH = "tests/http/test_refresh.py"
FINDINGS = "tests/http/test_refresh_findings.py"
GUARDS = "tests/http/test_token_guards.py"
RACES = "tests/http/test_interleavings.py"
COMMITTED = "tests/http/test_committed_state.py"
COMMITTED_CLI = "tests/cli/test_committed_state_cli.py"
PURGE = "tests/unit/test_purge.py"
TOKEN = "tests/http/test_token.py"
INTROSPECTION = "tests/http/test_introspection.py"
USER_INFO = "tests/http/test_user_info.py"
TOKENS_CLI = "tests/cli/test_tokens_cli.py"
REVOKE = "tests/http/test_revoke.py"


@dataclass(frozen=True)
class Mutant:
    """One source change and the tests that must fail with it."""

    name: str
    old: str
    new: str
    tests: tuple[str, ...]
    target: str


SAMPLE: tuple[Mutant, ...] = (
    # Dropped commits (issue 19: the four the shared test context hid, and more).
    Mutant(
        "commit-reuse-revocation",
        'revoke_families([row.family_id], "reuse_detected")\n    db.session.commit()',
        'revoke_families([row.family_id], "reuse_detected")\n    pass',
        (COMMITTED,),
        ROTATION,
    ),
    Mutant(
        "commit-code-replay-revocation",
        'revoke_families([family_id], "code_replay")\n    db.session.commit()',
        'revoke_families([family_id], "code_replay")\n    pass',
        (COMMITTED,),
        CODES,
    ),
    Mutant(
        "commit-cli-revoke-family",
        "reason) == 1\n    db.session.commit()\n    return revoked",
        "reason) == 1\n    return revoked",
        (COMMITTED_CLI,),
        REVOCATION,
    ),
    Mutant(
        "commit-rfc7009-access-token",
        "            .values(revoked_at=utcnow())\n        )\n        db.session.commit()\n",
        "            .values(revoked_at=utcnow())\n        )\n",
        (COMMITTED,),
        REVOCATION,
    ),
    Mutant(
        "commit-rfc7009-refresh-token",
        'revoke_families([token.family_id], "client_revoked")\n    db.session.commit()',
        'revoke_families([token.family_id], "client_revoked")\n    pass',
        (COMMITTED,),
        REVOCATION,
    ),
    # Refresh rules checked once, on the presented token.
    Mutant(
        "refresh-disabled-user",
        '    if found.user_disabled:\n        raise GrantError("The user account is disabled.")\n',
        "",
        (GUARDS,),
        ROTATION,
    ),
    Mutant(
        "refresh-wider-scope",
        "        if scope.exceeded:\n",
        "        if False:\n",
        (GUARDS,),
        ROTATION,
    ),
    Mutant(
        "refresh-other-clients-token",
        "if found is None or found.oauth_client_id != oauth_client.id:",
        "if found is None:",
        (REFRESH,),
        ROTATION,
    ),
    Mutant(
        "refresh-revoked-family",
        "if found.family_revoked_at is not None or found.revoked_at is not None:",
        "if found.revoked_at is not None:",
        (REFRESH, FINDINGS),
        ROTATION,
    ),
    Mutant(
        "refresh-rotation-off-after-rotation",
        "    if row.rotated_at is None:\n        if scope.exceeded:",
        "    if True:\n        if scope.exceeded:",
        (GUARDS, REFRESH),
        ROTATION,
    ),
    Mutant(
        "reuse-revokes-family-setting",
        "    if policy.reuse_revokes_family:\n",
        "    if True:\n",
        (REFRESH,),
        ROTATION,
    ),
    # The claim and replay UPDATEs (interleavings).
    Mutant(
        "claim-refresh-revoked-at",
        "_refresh.rotated_at.is_(None), _refresh.revoked_at.is_(None))",
        "_refresh.rotated_at.is_(None))",
        (RACES,),
        ROTATION,
    ),
    Mutant(
        "claim-code-used-at",
        "            AuthorizationCode.used_at.is_(None),\n"
        "            AuthorizationCode.expires_at",
        "            AuthorizationCode.expires_at",
        (RACES,),
        CODES,
    ),
    Mutant(
        "claim-code-expiry",
        "            AuthorizationCode.used_at.is_(None),\n"
        "            AuthorizationCode.expires_at > now,\n",
        "            AuthorizationCode.used_at.is_(None),\n",
        (RACES,),
        CODES,
    ),
    Mutant(
        "replay-live-family",
        "        successor_unused,\n        family_live,\n",
        "        successor_unused,\n",
        (RACES,),
        ROTATION,
    ),
    Mutant(
        "replay-window-boundary",
        "RefreshToken.grace_ends_at > now)",
        "RefreshToken.grace_ends_at >= now)",
        (REFRESH,),
        ROTATION,
    ),
    Mutant(
        "replay-cap-boundary",
        "RefreshToken.replay_count < policy.max_replays",
        "RefreshToken.replay_count <= policy.max_replays",
        (REFRESH,),
        ROTATION,
    ),
    # Codes.
    Mutant(
        "code-other-client",
        "if row is None or row.oauth_client_id != oauth_client.id:",
        "if row is None:",
        (TOKEN,),
        CODES,
    ),
    Mutant(
        "access-disabled-client",
        "            OAuth2Client.enabled(),\n",
        "",
        (GUARDS,),
        MODELS,
    ),
    Mutant(
        "access-disabled-user",
        "            User.enabled(),\n",
        "",
        (INTROSPECTION,),
        MODELS,
    ),
    Mutant(
        "access-revoked-family",
        "            TokenFamily.live(),\n            User.enabled(),\n",
        "            User.enabled(),\n",
        (REFRESH,),
        MODELS,
    ),
    Mutant(
        "access-revoked-token",
        "            cls.__table__.c.revoked_at.is_(None),\n            cls.unexpired(now),\n",
        "            cls.unexpired(now),\n",
        (REVOKE,),
        MODELS,
    ),
    # Audit names and CLI issuance.
    Mutant(
        "audit-names-client",
        '"family.revoked",\n            actor=actor,\n            client_id=client_id,',
        '"family.revoked",\n            actor=actor,\n            client_id=None,',
        (GUARDS,),
        REVOCATION,
    ),
    Mutant(
        "audit-names-user",
        "client_id=client_id,\n            username=username,\n            family=family_id,",
        "client_id=client_id,\n            username=None,\n            family=family_id,",
        (GUARDS,),
        REVOCATION,
    ),
    Mutant(
        "issue-disabled-user",
        "    if user.disabled:\n"
        '        raise ValidationError(f"user {user.username!r} is disabled")\n',
        "",
        (TOKENS_CLI,),
        ISSUANCE,
    ),
    Mutant(
        "issue-disabled-client",
        "    if oauth_client.disabled:\n"
        '        raise ValidationError(f"client {oauth_client.client_id!r} is disabled")\n',
        "",
        (TOKENS_CLI,),
        ISSUANCE,
    ),
    # Purge: retention boundaries and families without a usable refresh token.
    Mutant(
        "purge-live-access",
        "and_(TokenFamily.live(), ~live_refresh, ~live_access)",
        "and_(TokenFamily.live(), ~live_refresh)",
        (PURGE,),
        PURGING,
    ),
    Mutant(
        "purge-never-expiring-access",
        "or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now - retention)",
        "AccessToken.expires_at > now - retention",
        (PURGE,),
        PURGING,
    ),
    Mutant(
        "purge-access-retention",
        "AccessToken.expires_at > now - retention",
        "AccessToken.expires_at > now",
        (PURGE,),
        PURGING,
    ),
    Mutant(
        "purge-revoked-retention-boundary",
        "TokenFamily.revoked_at <= now - retention,",
        "TokenFamily.revoked_at < now - retention,",
        (PURGE,),
        PURGING,
    ),
)


def apply(source: str, mutant: Mutant) -> str:
    """Return the source with the mutant applied; fail unless its pattern occurs once."""
    found = source.count(mutant.old)
    if found != 1:
        raise SystemExit(
            f"mutant {mutant.name}: its pattern occurs {found} times in {mutant.target}; "
            "update tests/mutation/sample.py with the code"
        )
    return source.replace(mutant.old, mutant.new)


def copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "instance", "__pycache__", "*.pyc", "node_modules"
    )
    for name in ("authserver", "tests", "migrations", "templates", "static", "translations"):
        shutil.copytree(ROOT / name, into / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md", "babel.cfg"):
        shutil.copy2(ROOT / name, into / name)


def run(mutant: Mutant, work: Path, original: str) -> tuple[str, float]:
    """Apply one mutant in the copy, run its tests, restore; say killed/survived/error."""
    target = work / mutant.target
    target.write_text(apply(original, mutant))
    started = time.monotonic()
    try:
        result = subprocess.run(
            pytest_command(mutant.tests),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.monotonic() - started
    finally:
        target.write_text(original)
    # pytest: 0 all passed (survived), 1 some failed (killed), else an error of the run.
    outcome = {0: "SURVIVED", 1: "killed"}.get(result.returncode, f"error {result.returncode}")
    if outcome.startswith("error"):
        print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
    return outcome, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="keyword", default="", help="only mutants whose name has this")
    args = parser.parse_args(argv)
    chosen = [m for m in SAMPLE if args.keyword in m.name]
    originals = {m.target: (ROOT / m.target).read_text() for m in SAMPLE}
    for mutant in SAMPLE:  # every pattern is checked, even when running a few
        apply(originals[mutant.target], mutant)
    started = time.monotonic()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="authserver-mutants-") as tmp:
        work = Path(tmp)
        copy_tree(work)
        # The copy's own package comes first on the path (python -m pytest adds the cwd).
        for mutant in chosen:
            outcome, seconds = run(mutant, work, originals[mutant.target])
            failures += outcome != "killed" and not outcome.startswith("killed")
            print(f"{outcome:18} {seconds:6.1f}s  {mutant.name}", flush=True)
    killed = len(chosen) - failures
    print(f"mutation sample: {killed}/{len(chosen)} killed in {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
