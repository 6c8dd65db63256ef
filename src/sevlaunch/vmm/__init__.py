"""The emulated hypervisor: QEMU's command line for SEV guests, its SEV launch sequence over
the platform service, its QMP commands, and a guest model."""
