"""What the differential tests share: the seeds they draw their cases from, and
how they count and report the cases where gptoss and the independent oracle
differ (the first few printed in full, a total, and the exit code)."""

import time


def seeds_or_default(seeds):
    """The seeds asked for, or 1 (the same cases every run) and a fresh one."""
    return seeds or [1, int(time.time_ns() % 2**31)]


class Differences:
    """Cases where gptoss and the oracle disagree: `test` names the test in
    the summary line, `noun` the kind of disagreement ("mismatches"), and the
    first `shown` are printed by the describe() callbacks."""

    def __init__(self, test, noun, shown):
        self.test, self.noun, self.shown, self.count = test, noun, shown, 0

    def compare(self, same, describe):
        """Counts a case; when it differs and is among the first shown, prints describe()."""
        if same:
            return
        self.count += 1
        if self.count <= self.shown:
            print(describe())

    def exit_code(self):
        """Prints the total and returns 0 (all agree) or 1."""
        print(f"{self.test}: {self.count} {self.noun}")
        return 1 if self.count else 0
