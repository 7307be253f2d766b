"""What the client scripts share: named checks, each reported on its own line,
and a last line the Rust test reads ("NAME: N passed, M failed")."""

import sys
import traceback


class Session:
    """A run of checks against the service."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, title, ok, detail=""):
        """Records one check that has been made."""
        if ok:
            self.passed += 1
            print(f"ok   {title}")
        else:
            self.failed += 1
            print(f"FAIL {title}: {detail}")

    def step(self, title):
        """A decorator: runs the function at once; an exception fails the check."""

        def run(f):
            try:
                f()
                self.check(title, True)
            except Exception:  # noqa: BLE001 - every failure is reported
                self.check(title, False, "\n" + traceback.format_exc())
            return f

        return run

    def finish(self):
        """Prints the totals and exits non-zero if any check failed."""
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
