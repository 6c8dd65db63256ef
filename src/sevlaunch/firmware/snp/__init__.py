"""The SEV-SNP firmware, beside SEV's in :mod:`sevlaunch.firmware` and reached through the same
``Firmware.execute`` mailbox (SNP command IDs start at 0x81).

- :mod:`.states`: the SNP platform and guest tables; :mod:`.dispatch` the order of checks.
- :mod:`.platform_commands`: SNP_INIT(_EX), SHUTDOWN(_EX), PLATFORM_STATUS, DF_FLUSH, CONFIG,
  COMMIT, VLEK_LOAD, with REPORTED / COMMITTED / CURRENT TCB.
- :mod:`.launch_commands`: GCTX_CREATE, LAUNCH_START, ACTIVATE, LAUNCH_UPDATE (page types
  NORMAL, ZERO, UNMEASURED, SECRETS, CPUID with :mod:`.cpuid_check`, VMSA) and LAUNCH_FINISH
  (ID block and ID auth checked, HOST_DATA stored), DECOMMISSION; :mod:`.rmp` the reverse map.
- :mod:`.messages` and :mod:`.report`: SNP_GUEST_REQUEST, MSG_REPORT_REQ and MSG_KEY_REQ.
- :mod:`.identity`: the emulated AMD SNP PKI, the VCEK per chip and TCB, VLEK hashsticks;
  :mod:`.host_ops` what the platform service asks besides mailbox calls; :mod:`.api` typed
  conveniences (``Firmware.snp``).
"""
