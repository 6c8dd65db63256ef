"""The guest owner's attestation service (steps 4, 5 and 11 of the launch flow).

Owners register trust roots, workloads and sealed secrets; launchers (VM tools) obtain a
launch session for a verified platform and, on a matching measurement, the secret packet.
All state lives in the database (SQLite or PostgreSQL), so any instance can finish a launch
another one started.
"""
