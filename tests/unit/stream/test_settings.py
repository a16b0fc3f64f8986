"""Settings: flag > env > default, and bad values name the env var to fix."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stream import settings
from stream.errors import ConfigError


def _parse(argv: list[str], names: tuple[str, ...]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, names)
    return parser.parse_args(argv)


NAMES = ("chunk_s", "speed", "loop", "partitions", "data_dir", "log_level", "kafka_bootstrap")


def test_defaults() -> None:
    s = settings.load(_parse([], NAMES), environ={})
    assert s.chunk_s == 0.25 and s.speed == "1" and s.loop is False and s.partitions == 6
    assert s.kafka_bootstrap is None and s.data_dir is None
    assert s.topic("samples") == "ecgmon.samples"
    assert s.speed_factor == 1.0


def test_env_beats_default_and_flag_beats_env(tmp_path: Path) -> None:
    env = {"ECGMON_CHUNK_S": "0.5", "ECGMON_LOOP": "yes", "ECGMON_PARTITIONS": "3",
           "ECGMON_DATA_DIR": str(tmp_path), "ECGMON_SPEED": "max"}
    s = settings.load(_parse([], NAMES), environ=env)
    assert (s.chunk_s, s.loop, s.partitions, s.data_dir, s.speed_factor) == (0.5, True, 3, tmp_path, None)
    s = settings.load(_parse(["--chunk-s", "2", "--no-loop", "--partitions", "7"], NAMES), environ=env)
    assert (s.chunk_s, s.loop, s.partitions) == (2.0, False, 7)


def test_overrides_beat_flags() -> None:
    s = settings.load(_parse(["--chunk-s", "2"], NAMES), environ={}, chunk_s=4.0)
    assert s.chunk_s == 4.0


def test_empty_env_value_means_unset() -> None:
    assert settings.load(environ={"ECGMON_KAFKA_BOOTSTRAP": ""}).kafka_bootstrap is None


def test_help_names_the_env_var() -> None:
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, NAMES)
    text = parser.format_help()
    for name in NAMES:
        assert settings.env_name(name) in text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ECGMON_CHUNK_S": "abc"}, "ECGMON_CHUNK_S"),
        ({"ECGMON_CHUNK_S": "nan"}, "ECGMON_CHUNK_S"),
        ({"ECGMON_CHUNK_S": "0"}, "ECGMON_CHUNK_S"),
        ({"ECGMON_CHUNK_S": "61"}, "ECGMON_CHUNK_S"),
        ({"ECGMON_START_S": "-1"}, "ECGMON_START_S"),
        ({"ECGMON_START_S": "inf"}, "ECGMON_START_S"),
        ({"ECGMON_PARTITIONS": "0"}, "ECGMON_PARTITIONS"),
        ({"ECGMON_PARTITIONS": "1.5"}, "ECGMON_PARTITIONS"),
        ({"ECGMON_LOOP": "maybe"}, "ECGMON_LOOP"),
        ({"ECGMON_SPEED": "fast"}, "ECGMON_SPEED"),
        ({"ECGMON_SPEED": "-2"}, "ECGMON_SPEED"),
        ({"ECGMON_SPEED": "inf"}, "ECGMON_SPEED"),
        ({"ECGMON_LOG_LEVEL": "LOUD"}, "ECGMON_LOG_LEVEL"),
        ({"ECGMON_HTTP_PORT": "70000"}, "ECGMON_HTTP_PORT"),
        ({"ECGMON_RECORDS": " , "}, "ECGMON_RECORDS"),
        ({"ECGMON_DATA_DIR": "/no/such/folder"}, "ECGMON_DATA_DIR"),
        ({"ECGMON_PATIENTS": "-3"}, "ECGMON_PATIENTS"),
        ({"ECGMON_WAVEFORM_HISTORY_S": "-1"}, "ECGMON_WAVEFORM_HISTORY_S"),
        ({"ECGMON_WAVEFORM_HISTORY_S": "nan"}, "ECGMON_WAVEFORM_HISTORY_S"),
        ({"ECGMON_WAVEFORM_HISTORY_S": "3600"}, "ECGMON_WAVEFORM_HISTORY_S"),
        ({"ECGMON_ALARM_HR_LOW_BPM": "10"}, "ECGMON_ALARM_HR_LOW_BPM"),
        ({"ECGMON_ALARM_HR_HIGH_BPM": "nan"}, "ECGMON_ALARM_HR_HIGH_BPM"),
        ({"ECGMON_ALARM_HR_LOW_BPM": "100", "ECGMON_ALARM_HR_HIGH_BPM": "105"}, "ECGMON_ALARM_HR_HIGH_BPM"),
        ({"ECGMON_ALARM_PAUSE_S": "5"}, "ECGMON_ALARM_PAUSE_S"),
        ({"ECGMON_ALARMS_OFF": "pause,asystole"}, "asystole: only these can be off"),
        ({"ECGMON_ARCHIVE_DAYS": "0"}, "ECGMON_ARCHIVE_DAYS"),
        ({"ECGMON_ARCHIVE_DAYS": "nan"}, "ECGMON_ARCHIVE_DAYS"),
    ],
)
def test_bad_env_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings.load(environ=env)


def test_bad_flag_names_flag_and_env_var() -> None:
    with pytest.raises(ConfigError, match=r"--chunk-s.*ECGMON_CHUNK_S"):
        settings.load(_parse(["--chunk-s", "x"], NAMES), environ={})


def test_alarms_off_list_strips_blanks() -> None:
    s = settings.load(environ={"ECGMON_ALARMS_OFF": " pause, ,atrial_fibrillation "})
    assert s.alarms_off_list == ["pause", "atrial_fibrillation"]


def test_record_list_strips_blanks() -> None:
    assert settings.load(environ={"ECGMON_RECORDS": " 100, 203,,"}).record_list == ["100", "203"]
