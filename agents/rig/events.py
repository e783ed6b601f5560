"""Experiment-rig vocabulary: the ExpMessage events, ExpStatus states and exp_ref checks (pure).

These are the messages experiment rigs use to tell each other that an experiment was
initialised, started, stopped, interrupted or cleaned up. The integer values are those of
iblutil's rig protocol 1.0.0, so the same numbers travel on the UDP wire and on WAMP feeds.
"""
from __future__ import annotations

import datetime
import enum
import functools
import operator
import re
from typing import Any, Mapping

from ocs_core.runtime.text import brief

__all__ = [
    "PROTOCOL_VERSION",
    "ExpMessage",
    "ExpStatus",
    "validate_exp_ref",
    "validate_status",
]

#: Version of the event vocabulary and message shapes (iblutil's PROTOCOL_VERSION).
PROTOCOL_VERSION = "1.0.0"


class ExpMessage(enum.IntFlag, boundary=enum.STRICT):
    """Standard experiment messages exchanged between rigs; combinable with ``|``.

    The null value ``ExpMessage(0)`` is not an event: on the UDP wire it marks an error report
    from a remote callback, and :meth:`validate` rejects it.
    """

    EXPINIT = 1  #: Experiment is initialising.
    EXPSTART = 2  #: Experiment has begun.
    EXPEND = 4  #: Experiment has stopped.
    EXPCLEANUP = 8  #: Experiment cleanup has begun.
    EXPINTERRUPT = 16  #: Experiment was interrupted.
    EXPSTATUS = 32  #: Experiment status report.
    EXPINFO = 64  #: Experiment information, e.g. task protocol start and end.
    ALYX = 128  #: Alyx database URL and token.

    @classmethod
    def any(cls) -> "ExpMessage":
        """Return the combination of every event (not including the null message 0)."""
        return functools.reduce(operator.or_, cls)

    @staticmethod
    def validate(event: "str | int | ExpMessage", allow_bitwise: bool = True) -> "ExpMessage":
        """Return the ExpMessage for ``event``, raising if it names no event.

        Args:
            event: A member, its integer value, or its name in any case (``'expstart'``).
                With ``allow_bitwise``, names may be joined with ``|`` (``'expend|expinterrupt'``)
                and integers may combine several event bits.
            allow_bitwise: If False, reject combinations of more than one event.

        Returns:
            The corresponding (possibly combined) ExpMessage.

        Raises:
            TypeError: ``event`` is neither a string, an integer nor an ExpMessage.
            ValueError: ``event`` matches no event by name or value, is the null message 0,
                or is a combination of events while ``allow_bitwise`` is False.

        Examples:
            >>> ExpMessage.validate('expstart')
            <ExpMessage.EXPSTART: 2>
            >>> ExpMessage.validate(ExpMessage.EXPEND)
            <ExpMessage.EXPEND: 4>
        """
        choices = tuple(ExpMessage.__members__)
        if isinstance(event, ExpMessage):
            value = event
        elif isinstance(event, bool) or not isinstance(event, (str, int)):
            raise TypeError(
                f"event must be a str, int or ExpMessage, not {type(event).__name__} ({brief(event)})"
            )
        elif isinstance(event, str):
            names = [part.strip().upper() for part in event.split("|")]
            if not all(name in ExpMessage.__members__ for name in names):
                raise ValueError(f"unrecognised event {brief(event)}; choices: {choices}")
            value = functools.reduce(operator.or_, (ExpMessage[name] for name in names))
        else:
            if not 0 < event <= int(ExpMessage.any()):
                raise ValueError(
                    f"unrecognised event {brief(event)}; values are 1..{int(ExpMessage.any())}"
                    f" made of the bits of {choices}"
                )
            value = ExpMessage(event)
        if value == 0:
            raise ValueError(f"the null event 0 is not an event; choices: {choices}")
        if not allow_bitwise and value.bit_count() != 1:
            raise ValueError(
                f"compound (bitwise) event {value!r} not permitted here; choose one of {choices}"
            )
        return value


class ExpStatus(enum.IntEnum):
    """Standard states a rig reports with EXPSTATUS and EXPINFO."""

    CONNECTED = 0  #: Service is connected.
    INITIALIZED = 10  #: Service is initialised.
    RUNNING = 20  #: Service is running.
    STOPPED = 30  #: Experiment has stopped.


def validate_status(status: "ExpStatus | int | str") -> ExpStatus:
    """Return the ExpStatus for a member, its integer value or its name (any case).

    Raises:
        TypeError: ``status`` is not an ExpStatus, int or str.
        ValueError: ``status`` names no ExpStatus.
    """
    choices = {m.name: m.value for m in ExpStatus}
    if isinstance(status, ExpStatus):
        return status
    if isinstance(status, bool) or not isinstance(status, (int, str)):
        raise TypeError(f"status must be an ExpStatus, int or str, not {type(status).__name__}")
    try:
        if isinstance(status, str):
            return ExpStatus[status.strip().upper()]
        return ExpStatus(status)
    except (KeyError, ValueError):
        raise ValueError(f"unrecognised status {brief(status)}; choices: {choices}") from None


_EXP_REF = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d+)_([A-Za-z0-9][A-Za-z0-9_.-]*)$")
_MAX_EXP_REF = 256


def validate_exp_ref(exp_ref: "str | Mapping[str, Any]") -> str:
    """Check an experiment reference of the form ``yyyy-mm-dd_n_subject``; return it.

    Args:
        exp_ref: The reference string, e.g. ``'2022-01-01_1_subject'``, or a mapping with keys
            ``date``, ``sequence`` and ``subject`` that is joined into one.

    Returns:
        The reference string.

    Raises:
        TypeError: ``exp_ref`` is neither a string nor a mapping.
        ValueError: the string does not match ``yyyy-mm-dd_n_subject``, the date does not exist,
            or the subject holds characters other than letters, digits, ``_``, ``-`` and ``.``.
    """
    if isinstance(exp_ref, Mapping):
        missing = {"date", "sequence", "subject"} - set(exp_ref)
        if missing:
            raise ValueError(f"exp_ref mapping lacks keys {sorted(missing)}: {brief(dict(exp_ref))}")
        try:
            sequence = int(exp_ref["sequence"])
        except (TypeError, ValueError):
            raise ValueError(f"exp_ref sequence must be an integer, got {brief(exp_ref['sequence'])}") from None
        exp_ref = f"{exp_ref['date']}_{sequence}_{exp_ref['subject']}"
    if not isinstance(exp_ref, str):
        raise TypeError(f"exp_ref must be a str like '2022-01-01_1_subject', not {type(exp_ref).__name__}")
    match = _EXP_REF.match(exp_ref) if len(exp_ref) <= _MAX_EXP_REF else None
    if not match:
        raise ValueError(f"exp_ref {brief(exp_ref, 80)} is not of the form yyyy-mm-dd_n_subject")
    try:
        datetime.date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueError(f"exp_ref {exp_ref!r} has an invalid date {match.group(1)!r}") from None
    return exp_ref
