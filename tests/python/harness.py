"""What the client scripts share: the `openai` client for the worker under test (from
ORCD_BASE_URL and ORCD_API_KEY) and the check runner, which reports every check and exits
non-zero when any failed."""

import os
import sys

from openai import OpenAI

BASE = os.environ["ORCD_BASE_URL"]
KEY = os.environ["ORCD_API_KEY"]
client = OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=300)


def run(checks):
    """Run each `(name, fn)`; print `ok` or `FAILED` with the error for each, then the counts,
    and exit 1 if any failed (0 otherwise)."""
    failures = []
    for name, fn in checks:
        try:
            fn()
            print(f"ok: {name}")
        except Exception as e:  # noqa: BLE001 - report every failed check
            failures.append(name)
            print(f"FAILED: {name}: {e!r}")
    print(f"{len(checks) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)
