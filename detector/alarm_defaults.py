"""The alarm limits every patient starts with: the deployment's settings (``ECGMON_ALARM_*``,
``ECGMON_ALARMS_OFF``) over the engine's definitions.  The detector runs new patients on them;
the gateway shows them as the defaults a nurse's change departs from."""

from __future__ import annotations

from detector.core.alarms import AlarmConfig, AlarmLimits
from stream.settings import Settings


def deployment_limits(settings: Settings) -> AlarmLimits:
    return AlarmLimits.checked(settings.alarm_hr_low_bpm, settings.alarm_hr_high_bpm,
                               settings.alarm_pause_s, settings.alarms_off_list)


def deployment_alarm_config(settings: Settings) -> AlarmConfig:
    return deployment_limits(settings).apply(AlarmConfig())
