"""The events table (worker/cli/table.py)."""

from __future__ import annotations

from worker.cli.table import short_uid, table_row


def test_short_uid_keeps_the_tail() -> None:
    assert short_uid("1.2.840.113619.2.55.3.604688119") == "...3.604688119"
    assert short_uid("1.2.3") == "1.2.3"
    assert short_uid(None) == "-"
    assert len(short_uid("1." * 30 + "9")) == 14


def test_table_row_of_a_message_without_anything() -> None:
    assert table_row(b"", {}).split() == ["-", "-", "-", "-", "-"]
