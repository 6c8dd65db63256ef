# ruff: noqa: A005  (tests.platform mirrors sevlaunch.platform; it is never imported as "platform")
