"""The paper form of a key export, without a repository: it round-trips, and every way
a person copying it back can go wrong is named before any password is tried."""

from __future__ import annotations

import pytest

from bbackup.crypto.kdf import Argon2idParams
from bbackup.crypto.key_export import (
    open_export,
    parse_export,
    render_json,
    render_paper,
    seal_export,
)
from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError, WrongPassword

REPOSITORY_ID = "ab" * 32
#: The cheapest Argon2id: these tests are about the form, not the cost of a guess.
TEST_KDF = Argon2idParams(t=1, m=32, p=4)


@pytest.fixture(scope="module")
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture(scope="module")
def paper(master: MasterKey) -> str:
    return render_paper(seal_export(master, REPOSITORY_ID, "export password", TEST_KDF))


def numbered(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1].isdigit()]


def test_paper_form_round_trips_with_any_spacing_and_case(master: MasterKey, paper: str) -> None:
    assert f"repository {REPOSITORY_ID}" in paper
    retyped = "\n".join(
        " ".join(line.lower().split()) if line[:1].isdigit() else line
        for line in paper.splitlines()
    )

    export = parse_export(retyped.encode())

    assert export.repository_id == REPOSITORY_ID
    assert open_export(export, "export password") == master


def test_swapped_lines_are_caught(paper: str) -> None:
    first, second = numbered(paper)[:2]
    n1, rest1 = first.split(None, 1)
    n2, rest2 = second.split(None, 1)
    swapped = paper.replace(first, "@@").replace(second, f"{n2}  {rest1}")
    swapped = swapped.replace("@@", f"{n1}  {rest2}")

    with pytest.raises(IntegrityError, match="line 1 of the key export does not match"):
        parse_export(swapped.encode())


def test_a_checksum_typo_names_its_line(paper: str) -> None:
    line = numbered(paper)[-1]
    head, check = line.rsplit(None, 1)
    wrong = ("A" if check[0] != "A" else "B") + check[1:]

    with pytest.raises(IntegrityError, match=r"line \d+ of the key export does not match"):
        parse_export(paper.replace(line, f"{head}  {wrong}").encode())


def test_a_lost_last_line_is_caught(paper: str) -> None:
    lines = paper.splitlines()
    with pytest.raises(IntegrityError, match="incomplete"):
        parse_export("\n".join(line for line in lines if not line.startswith("end")).encode())


def test_wrong_export_password_is_not_damage(paper: str) -> None:
    export = parse_export(paper.encode())
    with pytest.raises(WrongPassword, match="wrong export password"):
        open_export(export, "another password")


def test_json_and_paper_forms_hold_the_same_export(master: MasterKey) -> None:
    export = seal_export(master, REPOSITORY_ID, "export password", TEST_KDF)
    from_json = parse_export(render_json(export))
    from_paper = parse_export(render_paper(export).encode())
    assert from_json.payload() == from_paper.payload() == export.payload()


def test_text_that_is_no_export_is_refused() -> None:
    for text in (b"", b"hello", b'{"type": "something else"}', b"\xff\xfe"):
        with pytest.raises(IntegrityError):
            parse_export(text)
