"""Fails the run when no test ran, or when any integration or end-to-end test was skipped.

A skipped integration test means a real service was missing, and that is not a pass.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(report: str) -> int:
    root = ET.parse(report).getroot()
    cases = list(root.iter("testcase"))
    ran = [case for case in cases if case.find("skipped") is None]
    skipped_with_services = [
        case
        for case in cases
        if case.find("skipped") is not None
        and case.get("classname", "").startswith(("tests.integration", "tests.e2e"))
    ]
    for case in skipped_with_services:
        reason = case.find("skipped")
        message = reason.get("message", "") if reason is not None else ""
        print(f"error: skipped {case.get('classname')}::{case.get('name')}: {message}")
    if not ran:
        print("error: no test ran")
        return 1
    if skipped_with_services:
        print(f"error: {len(skipped_with_services)} integration/e2e tests skipped")
        return 1
    print(f"test report: {len(ran)} ran, none of the integration/e2e tests skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
