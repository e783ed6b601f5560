"""Tests for the rig vocabulary: ExpMessage.validate, ExpStatus and exp_ref checks."""
import pytest

from agents.rig.events import (
    PROTOCOL_VERSION,
    ExpMessage,
    ExpStatus,
    validate_exp_ref,
    validate_status,
)

E = ExpMessage


def test_values_match_protocol_1_0_0():
    assert PROTOCOL_VERSION == "1.0.0"
    assert [(m.name, int(m)) for m in E] == [
        ("EXPINIT", 1), ("EXPSTART", 2), ("EXPEND", 4), ("EXPCLEANUP", 8),
        ("EXPINTERRUPT", 16), ("EXPSTATUS", 32), ("EXPINFO", 64), ("ALYX", 128),
    ]
    assert [(m.name, int(m)) for m in ExpStatus] == [
        ("CONNECTED", 0), ("INITIALIZED", 10), ("RUNNING", 20), ("STOPPED", 30),
    ]


def test_any_is_every_event_but_not_null():
    assert E.any() == 255
    assert all(m in E.any() for m in E)
    assert E(0) not in list(E)


@pytest.mark.parametrize("given, expected", [
    ("expstart", E.EXPSTART),
    ("EXPSTART", E.EXPSTART),
    ("  ExpEnd ", E.EXPEND),
    ("alyx", E.ALYX),
    (E.EXPEND, E.EXPEND),
    (1, E.EXPINIT),
    (128, E.ALYX),
    (10, E.EXPSTART | E.EXPCLEANUP),  # 10 = 2 | 8, a compound of two events
    (E.EXPEND | E.EXPINTERRUPT, E.EXPEND | E.EXPINTERRUPT),
    ("expend|EXPINTERRUPT", E.EXPEND | E.EXPINTERRUPT),
    (255, E.any()),
])
def test_validate_accepts(given, expected):
    result = E.validate(given)
    assert result == expected
    assert isinstance(result, E)


@pytest.mark.parametrize("given", [None, 2.0, b"EXPSTART", ["EXPSTART"], True, object()])
def test_validate_type_errors(given):
    with pytest.raises(TypeError, match="event must be a str, int or ExpMessage"):
        E.validate(given)


@pytest.mark.parametrize("given", ["foo", "", "EXPSTART|bogus", "2", 0, 256, -1, 1 << 20, E(0)])
def test_validate_value_errors(given):
    with pytest.raises(ValueError):
        E.validate(given)


@pytest.mark.parametrize("given", [3, E.EXPEND | E.EXPINTERRUPT, "expinit|expstart", 255])
def test_validate_rejects_bitwise_when_not_allowed(given):
    with pytest.raises(ValueError, match="compound"):
        E.validate(given, allow_bitwise=False)
    assert E.validate(given, allow_bitwise=True) == E.validate(given)


def test_validate_single_allowed_when_not_bitwise():
    for member in E:
        assert E.validate(member.name.lower(), allow_bitwise=False) is member
        assert E.validate(int(member), allow_bitwise=False) is member


def test_compound_iterates_over_bits():
    assert list(E.validate(20)) == [E.EXPEND, E.EXPINTERRUPT]


@pytest.mark.parametrize("given, expected", [
    (ExpStatus.RUNNING, ExpStatus.RUNNING), (0, ExpStatus.CONNECTED), ("stopped", ExpStatus.STOPPED),
])
def test_validate_status(given, expected):
    assert validate_status(given) is expected


def test_validate_status_errors():
    with pytest.raises(ValueError, match="unrecognised status 15"):
        validate_status(15)
    with pytest.raises(ValueError):
        validate_status("paused")
    with pytest.raises(TypeError):
        validate_status(1.5)
    with pytest.raises(TypeError):
        validate_status(True)


@pytest.mark.parametrize("ref", [
    "2022-01-01_1_subject", "2024-02-29_12_SW_023", "2023-12-31_001_ZM-1743", "2020-05-05_3_KS.020",
])
def test_exp_ref_valid(ref):
    assert validate_exp_ref(ref) == ref


def test_exp_ref_from_mapping():
    assert validate_exp_ref({"date": "2022-01-01", "sequence": "2", "subject": "mouse"}) == "2022-01-01_2_mouse"


@pytest.mark.parametrize("ref", [
    "", "subject", "2022-01-01_subject", "2022-1-1_1_subject", "2022-01-01_x_subject",
    "2022-01-01_1_", "2022-01-01_1_sub ject", "2022-01-01_1_sub/ject", "2022-02-30_1_subject",
    "22-01-01_1_subject", "2022-01-01_1_" + "a" * 300, "2022-01-01_-1_subject",
])
def test_exp_ref_invalid(ref):
    with pytest.raises(ValueError):
        validate_exp_ref(ref)


def test_exp_ref_bad_type_and_mapping():
    with pytest.raises(TypeError):
        validate_exp_ref(None)
    with pytest.raises(TypeError):
        validate_exp_ref(20220101)
    with pytest.raises(ValueError, match="lacks keys"):
        validate_exp_ref({"date": "2022-01-01"})
    with pytest.raises(ValueError, match="sequence"):
        validate_exp_ref({"date": "2022-01-01", "sequence": "one", "subject": "m"})


def test_pure_modules_import_no_twisted():
    import subprocess
    import sys
    code = ("import sys, agents.rig, agents.rig.events, agents.rig.messages, agents.rig.uri; "
            "print(any(m.startswith('twisted') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
