"""The emulated ``/dev/sev``: a service owning one firmware, its wire protocol and clients.

- :mod:`~sevlaunch.platform.protocol`: sans-IO framing shared by both ends;
- :mod:`~sevlaunch.platform.service`: the asyncio service (``sevlaunch platform serve``);
- :mod:`~sevlaunch.platform.client`: :class:`PlatformClient` (sync) and
  :class:`AsyncPlatformClient` with typed methods for the SEV commands.
"""
