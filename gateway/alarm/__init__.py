"""Alarm panels calling in: Ademco Contact ID messages and Asterisk AlarmReceiver event files (pure)."""
