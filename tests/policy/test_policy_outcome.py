import pytest

from pymesh.policy import flags
from pymesh.policy.outcome import Classification, Outcome, classify


@pytest.mark.parametrize(
    "outcome, status, exhausted, expected",
    [
        (Outcome.CONNECT_FAILURE, None, False, ("UF", 503, True)),
        (Outcome.CONNECT_FAILURE, None, True, ("UF,URX", 503, True)),
        (Outcome.REFUSED_STREAM, None, False, ("UR", 503, True)),
        (Outcome.RESET, None, False, ("UC", 503, True)),
        (Outcome.RESET, None, True, ("UC,URX", 503, True)),
        (Outcome.TIMEOUT, None, False, ("UT", 504, True)),
        (Outcome.TIMEOUT, None, True, ("UT,URX", 504, True)),
        (Outcome.RESPONSE, 200, False, ("-", 200, False)),
        (Outcome.RESPONSE, 503, False, ("-", 503, False)),
        (Outcome.RESPONSE, 503, True, ("URX", 503, False)),
    ],
)
def test_classify(outcome, status, exhausted, expected):
    assert classify(outcome, status, exhausted) == Classification(*expected)


def test_classify_response_needs_status():
    with pytest.raises(ValueError):
        classify(Outcome.RESPONSE)


@pytest.mark.parametrize("status, error", [(200, False), (404, False), (499, False), (500, True), (504, True)])
def test_is_error(status, error):
    assert classify(Outcome.RESPONSE, status).is_error is error


def test_local_failures_are_errors():
    assert all(classify(o).is_error for o in Outcome if o is not Outcome.RESPONSE)


@pytest.mark.parametrize(
    "given, expected",
    [((), "-"), (("-",), "-"), (("URX", "UF"), "UF,URX"), (("DC", "NR", "UH"), "UH,NR,DC"), (("UT", "UT"), "UT")],
)
def test_flags_join_in_envoy_order(given, expected):
    assert flags.join(*given) == expected


def test_flag_constants():
    assert (flags.NR, flags.UH, flags.UF, flags.UC, flags.UT, flags.URX, flags.DC, flags.NONE) == (
        "NR", "UH", "UF", "UC", "UT", "URX", "DC", "-",
    )
