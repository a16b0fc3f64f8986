"""What the ward enters about a patient: bed label, name, a note for whoever watches the bed.

The stream knows a patient only by its id (the Kafka key, e.g. ``mitdb-203``); a central
station shows beds and names.  The gateway keeps these in the patient's Redis hash (``info``,
JSON, with who changed them and when) and serves them with the patient's state, so every
dashboard shows the same.  Names are personal data: the gateway serves them only with its
token, and Redis holds them in clear (see README "Security").
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from detector.gateway.context import ApiError
from stream.redis import AlertStore

LIMITS = {"bed": 16, "name": 100, "note": 200}


class PatientInfoBody(BaseModel):
    user: str = Field(min_length=1, max_length=100, description="who enters the details")
    bed: str = Field(default="", max_length=LIMITS["bed"], description="bed label, e.g. '12' or 'ICU-3'")
    name: str = Field(default="", max_length=LIMITS["name"], description="the patient's name")
    note: str = Field(default="", max_length=LIMITS["note"],
                      description="a short note for whoever watches the bed, e.g. 'pacemaker'")


def empty(patient_id: str) -> dict[str, Any]:
    return {"patient_id": patient_id, "bed": "", "name": "", "note": "", "updated_by": None,
            "updated_at_ms": None}


async def read(store: AlertStore, patient_id: str) -> dict[str, Any]:
    info = (await store.patient_state(patient_id)).info
    return {**empty(patient_id), **(info or {})}


async def write(store: AlertStore, patient_id: str, body: PatientInfoBody) -> dict[str, Any]:
    """Check and store the details; ApiError 422 names a field that is not printable text."""
    fields = {"user": body.user.strip(), "bed": body.bed.strip(), "name": body.name.strip(),
              "note": body.note.strip()}
    if not fields["user"]:
        raise ApiError(422, "user must be 1-100 printable characters")
    for name, value in fields.items():
        if not value.isprintable():
            raise ApiError(422, f"{name} must be printable text on one line")
    info = {"patient_id": patient_id, "bed": fields["bed"], "name": fields["name"],
            "note": fields["note"], "updated_by": fields["user"],
            "updated_at_ms": time.time_ns() // 1_000_000}
    await store.set_patient_info(patient_id, info)
    return info
