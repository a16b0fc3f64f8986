"""The wire fuzzer (issue #8): 2,000 mutated payloads raise nothing but DecodeError."""

from __future__ import annotations

import pytest

from stream import fuzz, serde
from stream.errors import DecodeError


def test_seeds_are_valid_payloads_of_every_kind() -> None:
    kinds = {type(serde.decode(p)) for p in fuzz.seeds()}
    assert kinds == set(fuzz.KINDS)


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_payloads_raise_only_decode_error(seed: int) -> None:
    report = fuzz.run(2000, seed=seed)
    assert report.failures == []
    assert report.cases == 2000
    assert set(report.reasons) <= set(serde.REASONS)
    # every kind of damage is reached, and some mutants still decode (e.g. a flipped sample bit)
    assert {"truncated", "bad_magic", "unknown_kind", "wrong_kind", "trailing_bytes",
            "invalid_field", "wrong_length"} <= set(report.reasons)
    assert report.decoded > 0
    assert report.slowest_s < 0.5  # no case hangs


def test_fuzzer_reports_a_decoder_that_raises_something_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = serde.decode

    def leaky(payload: bytes) -> object:
        if len(payload) == 7:
            raise IndexError("boom")
        return real(payload)

    monkeypatch.setattr(serde, "decode", leaky)
    report = fuzz.run(3000, seed=2)
    assert report.failures and report.failures[0].startswith("IndexError: boom")


def test_cli_prints_cases_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--cases", "300", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("300 cases in ") and "cases/s" in out and "FAIL" not in out


def test_decode_error_is_the_contract() -> None:
    with pytest.raises(DecodeError):
        serde.decode(b"EG")
