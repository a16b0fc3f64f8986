"""The gateway: live ECG, beats, alerts and state to people (web dashboard) and machines (REST, WS)."""
