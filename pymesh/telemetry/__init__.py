"""pymesh.telemetry"""
